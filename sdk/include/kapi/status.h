/* kapi/status.h -- the one status type of the kapi SDK and its strerror.
 *
 * Every SDK call that can fail returns a kapi_status; results travel through
 * out-parameters. Codes are negative, KAPI_OK is zero, and a code is never
 * renumbered or reused: new codes are appended below the last one.
 * This header has no other dependency and declares nothing of the core. */
#ifndef KAPI_STATUS_H
#define KAPI_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kapi_status {
    KAPI_OK = 0,
    KAPI_ENOTFOUND = -1, /* no such header, parameter, key or value index */
    KAPI_EPHASE = -2,    /* accessor called in a phase where it is not valid */
    KAPI_EINVAL = -3,    /* an argument is malformed (NULL, bad status, bad name) */
    KAPI_ENOMEM = -4,    /* the request arena or the process is out of memory */
    KAPI_ETOOBIG = -5,   /* a size limit was exceeded */
    KAPI_ESTATE = -6,    /* the request is not in a state that allows this (e.g. already responded) */
    KAPI_ETIMEDOUT = -7, /* a deadline passed */
    KAPI_EIO = -8,       /* an I/O or system call failed */
    KAPI_EABI = -9,      /* module and host ABI versions are incompatible */
    KAPI_ECONFIG = -10,  /* a configuration value is invalid */
} kapi_status;

/* kapi_strerror -- a short, static, English description of STATUS.
 * Returns: a string with static storage duration (never NULL, never freed);
 * an unknown code yields "unknown kapi status". Usable from any thread. */
static inline const char *
kapi_strerror(kapi_status status)
{
    switch (status) {
    case KAPI_OK: return "success";
    case KAPI_ENOTFOUND: return "not found";
    case KAPI_EPHASE: return "not valid in this phase";
    case KAPI_EINVAL: return "invalid argument";
    case KAPI_ENOMEM: return "out of memory";
    case KAPI_ETOOBIG: return "size limit exceeded";
    case KAPI_ESTATE: return "invalid state for this call";
    case KAPI_ETIMEDOUT: return "timed out";
    case KAPI_EIO: return "input/output error";
    case KAPI_EABI: return "incompatible ABI version";
    case KAPI_ECONFIG: return "invalid configuration";
    }
    return "unknown kapi status";
}

#ifdef __cplusplus
}
#endif
#endif /* KAPI_STATUS_H */
