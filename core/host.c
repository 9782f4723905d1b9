/* host.c -- fills the gateway's kapi_host table once (see host.h). Module
 * log lines are tagged with the module's name and the request id. */
#include "host.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include "fetch.h"
#include "log.h"
#include "request.h"
#include "server.h"
#include "store.h"

static kapi_host table;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void module_log(kapi_req *r, kapi_log_level level, const char *fmt, ...) LOG_PRINTF(3, 4);

static void
module_log(kapi_req *r, kapi_log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    const char *tag = r && r->current_module ? r->current_module : "module";
    log_tagged(level, tag, r ? r->id.ptr : NULL, "%s", msg);
}

static void
fill(void)
{
    req_fill_host(&table);
    store_fill_host(&table);
    table.log = module_log;
    table.pause = server_pause;
    table.resume = server_resume;
    table.fetch = fetch_start;
}

const kapi_host *
host_table(void)
{
    pthread_once(&table_once, fill);
    return &table;
}
