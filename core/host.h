/* host.h -- the kapi_host table the gateway hands to every module it loads:
 * request.c's accessors plus the gateway's log, pause and resume. Built
 * once; read-only afterwards. It does not implement the accessors. */
#ifndef KAPI_HOST_TABLE_H
#define KAPI_HOST_TABLE_H

#include <kapi/host.h>

/* The process-wide host table (static storage, never freed). */
const kapi_host *host_table(void);

#endif /* KAPI_HOST_TABLE_H */
