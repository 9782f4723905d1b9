/* fetch.h -- the gateway's implementation of kapi_host.fetch (ABI 1.1):
 * subrequests from modules through the upstream machinery. The contract is
 * the one written on kapi_host.fetch in kapi/host.h. */
#ifndef KAPI_FETCH_H
#define KAPI_FETCH_H

#include <kapi/host.h>

kapi_status fetch_start(kapi_req *r, const kapi_fetch_request *f, kapi_fetch_done done, void *data);

#endif /* KAPI_FETCH_H */
