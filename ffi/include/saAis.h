/*
 * saAis.h: ckpt's own header for the SA Forum AIS common definitions
 * (base types, times, names, versions, dispatch flags, error codes) at the
 * level the Checkpoint Service API needs (AIS C programming model B.05.01).
 *
 * It belongs to libSaCkpt, ckpt's drop-in implementation of the SA Forum
 * AIS Checkpoint Service; <saCkpt.h> includes it. Layouts are those of the
 * OpenSAF, openais and SAFplus headers (x86_64 LP64 sizes in comments).
 *
 * SaNameT has two layouts of the same size (258 bytes, 2-byte aligned):
 *   - by default, the classic { length, value[SA_MAX_NAME_LENGTH] };
 *   - with SA_EXTENDED_NAME_SOURCE defined before this header is included,
 *     an opaque array read and written only with saAisNameLend() and
 *     saAisNameBorrow(), which also carry names of 256 bytes or more.
 */
#ifndef CKPT_SA_AIS_H
#define CKPT_SA_AIS_H

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Base types ------------------------------------------------------ */

typedef char SaInt8T;
typedef short SaInt16T;
typedef int SaInt32T;
typedef long long SaInt64T;

typedef unsigned char SaUint8T;
typedef unsigned short SaUint16T;
typedef unsigned int SaUint32T;
typedef unsigned long long SaUint64T;

typedef float SaFloatT;
typedef double SaDoubleT;
typedef char *SaStringT;
typedef const char *SaConstStringT;

/* Nanoseconds: an absolute time counts from the epoch (1970-01-01 UTC),
   a duration is relative. */
typedef SaInt64T SaTimeT;

typedef SaUint64T SaInvocationT;
typedef SaUint64T SaSizeT;
typedef SaUint64T SaOffsetT;
/* In POSIX, a file descriptor usable with select() and poll(). */
typedef SaUint64T SaSelectionObjectT;

typedef enum {
	SA_FALSE = 0,
	SA_TRUE = 1
} SaBoolT;

/* An arbitrary octet string (16 bytes). */
typedef struct {
	SaSizeT bufferSize;
	SaUint8T *bufferAddr;
} SaAnyT;

/* 8 bytes. */
typedef union {
	SaInt64T int64Value;
	SaUint64T uint64Value;
	SaTimeT timeValue;
	SaFloatT floatValue;
	SaDoubleT doubleValue;
} SaLimitValueT;

/* ---- Time constants (SaTimeT, that is long long) --------------------- */

#define SA_TIME_END             0x7FFFFFFFFFFFFFFFLL
#define SA_TIME_MAX             SA_TIME_END
#define SA_TIME_BEGIN           0x0LL
/* The bit pattern 0x8000000000000000: the most negative SaTimeT, written so
   that it has type long long like the others. */
#define SA_TIME_UNKNOWN         (-0x7FFFFFFFFFFFFFFFLL - 1)

#define SA_TIME_ONE_MICROSECOND 1000LL
#define SA_TIME_ONE_MILLISECOND 1000000LL
#define SA_TIME_ONE_SECOND      1000000000LL
#define SA_TIME_ONE_MINUTE      60000000000LL
#define SA_TIME_ONE_HOUR        3600000000000LL
#define SA_TIME_ONE_DAY         86400000000000LL

/* ---- Names ----------------------------------------------------------- */

#ifndef SA_EXTENDED_NAME_SOURCE

#define SA_MAX_NAME_LENGTH 256

/* 258 bytes, align 2: length at 0, value at 2 (not NUL-terminated). */
typedef struct {
	SaUint16T length;
	SaUint8T value[SA_MAX_NAME_LENGTH];
} SaNameT;

#else /* SA_EXTENDED_NAME_SOURCE */

/* The longest name the classic layout can hold. */
#define SA_MAX_UNEXTENDED_NAME_LENGTH 256

/* Same size and alignment as the classic layout (258 / 2). Opaque: a name
   shorter than SA_MAX_UNEXTENDED_NAME_LENGTH is stored exactly as in the
   classic layout; a longer one refers to the caller's string. */
typedef struct {
	SaUint16T _opaque[129];
} SaNameT;

/* Makes *name refer to the NUL-terminated string value. A long value is
   borrowed, not copied: it must outlive every use of *name. */
void saAisNameLend(SaConstStringT value, SaNameT *name);

/* The NUL-terminated string held or referred to by *name. */
SaConstStringT saAisNameBorrow(const SaNameT *name);

#endif /* SA_EXTENDED_NAME_SOURCE */

/* ---- Versions -------------------------------------------------------- */

/* 3 bytes, align 1. */
typedef struct {
	SaUint8T releaseCode;
	SaUint8T majorVersion;
	SaUint8T minorVersion;
} SaVersionT;

/* ---- Tracking flags (SaUint8T values) -------------------------------- */

#define SA_TRACK_CURRENT        0x01
#define SA_TRACK_CHANGES        0x02
#define SA_TRACK_CHANGES_ONLY   0x04
#define SA_TRACK_LOCAL          0x08
#define SA_TRACK_START_STEP     0x10
#define SA_TRACK_VALIDATE_STEP  0x20

/* ---- Dispatch -------------------------------------------------------- */

typedef enum {
	SA_DISPATCH_ONE = 1,
	SA_DISPATCH_ALL = 2,
	SA_DISPATCH_BLOCKING = 3
} SaDispatchFlagsT;

/* ---- Error codes (4 bytes) ------------------------------------------- */

typedef enum {
	SA_AIS_OK = 1,
	SA_AIS_ERR_LIBRARY = 2,
	SA_AIS_ERR_VERSION = 3,
	SA_AIS_ERR_INIT = 4,
	SA_AIS_ERR_TIMEOUT = 5,
	SA_AIS_ERR_TRY_AGAIN = 6,
	SA_AIS_ERR_INVALID_PARAM = 7,
	SA_AIS_ERR_NO_MEMORY = 8,
	SA_AIS_ERR_BAD_HANDLE = 9,
	SA_AIS_ERR_BUSY = 10,
	SA_AIS_ERR_ACCESS = 11,
	SA_AIS_ERR_NOT_EXIST = 12,
	SA_AIS_ERR_NAME_TOO_LONG = 13,
	SA_AIS_ERR_EXIST = 14,
	SA_AIS_ERR_NO_SPACE = 15,
	SA_AIS_ERR_INTERRUPT = 16,
	SA_AIS_ERR_NAME_NOT_FOUND = 17,
	SA_AIS_ERR_NO_RESOURCES = 18,
	SA_AIS_ERR_NOT_SUPPORTED = 19,
	SA_AIS_ERR_BAD_OPERATION = 20,
	SA_AIS_ERR_FAILED_OPERATION = 21,
	SA_AIS_ERR_MESSAGE_ERROR = 22,
	SA_AIS_ERR_QUEUE_FULL = 23,
	SA_AIS_ERR_QUEUE_NOT_AVAILABLE = 24,
	SA_AIS_ERR_BAD_FLAGS = 25,
	SA_AIS_ERR_TOO_BIG = 26,
	SA_AIS_ERR_NO_SECTIONS = 27,
	SA_AIS_ERR_NO_OP = 28,
	SA_AIS_ERR_REPAIR_PENDING = 29,
	SA_AIS_ERR_NO_BINDINGS = 30,
	SA_AIS_ERR_UNAVAILABLE = 31,
	SA_AIS_ERR_CAMPAIGN_ERROR_DETECTED = 32,
	SA_AIS_ERR_CAMPAIGN_PROC_FAILED = 33,
	SA_AIS_ERR_CAMPAIGN_CANCELED = 34,
	SA_AIS_ERR_CAMPAIGN_FAILED = 35,
	SA_AIS_ERR_CAMPAIGN_SUSPENDED = 36,
	SA_AIS_ERR_CAMPAIGN_SUSPENDING = 37,
	SA_AIS_ERR_ACCESS_DENIED = 38,
	SA_AIS_ERR_NOT_READY = 39,
	SA_AIS_ERR_DEPLOYMENT = 40
} SaAisErrorT;

/* ---- Services -------------------------------------------------------- */

/* The log service's member is spelled SA_SCV_LOG, as in the AIS and OpenSAF
   headers; SA_SVC_LOG is the same value under the regular spelling. */
typedef enum {
	SA_SVC_HPI = 1,
	SA_SVC_AMF = 2,
	SA_SVC_CLM = 3,
	SA_SVC_CKPT = 4,
	SA_SVC_EVT = 5,
	SA_SVC_MSG = 6,
	SA_SVC_LCK = 7,
	SA_SVC_IMMS = 8,
	SA_SCV_LOG = 9,
	SA_SVC_NTF = 10,
	SA_SVC_NAM = 11,
	SA_SVC_TMR = 12,
	SA_SVC_SMF = 13,
	SA_SVC_SEC = 14,
	SA_SVC_PLM = 15
} SaServicesT;

#define SA_SVC_LOG SA_SCV_LOG

#ifdef __cplusplus
}
#endif

#endif /* CKPT_SA_AIS_H */
