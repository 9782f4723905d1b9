/* fuzz_config.c -- libFuzzer target for config_parse (core/config.c and the
 * position scanner core/jsonpos.c).
 *
 * Arbitrary bytes as a config file: parsing must either succeed or fail with
 * one NUL-terminated line that starts with the file name, never crash, read
 * out of bounds or leak (LeakSanitizer runs with the fuzzer). A config that
 * parses is freed again. It does not load modules (generation.c). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    config *cfg = NULL;
    memset(err, 'x', sizeof(err));
    kapi_status st = config_parse("fuzz.json", (const char *)data, size, &cfg, err, sizeof(err));
    if (st == KAPI_OK) {
        if (!cfg || cfg->nlisteners == 0 || cfg->nmodule_dirs == 0)
            abort();
        config_free(cfg);
        return 0;
    }
    if (cfg || !memchr(err, '\0', sizeof(err)) || strncmp(err, "fuzz.json", 9) != 0 ||
        strchr(err, '\n'))
        abort();
    return 0;
}
