/*
 * clCkptHotStandby.h: ckpt's own header for SAFplus 6's hot-standby
 * checkpoint extension, for programs written against SAFplus that pass SA
 * checkpoint handles to it (SAFplus's checkpoint handles are the same
 * values). libSaCkpt exports these two functions; the types are SAFplus's,
 * declared here only where SAFplus's own headers have not declared them.
 *
 * clCkptImmediateConsumptionRegister(): from the call on, whenever another
 * handle creates (with data), writes or overwrites sections of the
 * checkpoint, the callback receives each changed section's id and its whole
 * contents after the change (dataOffset 0, dataSize = readSize = the
 * section's size). The callback runs on a library thread, as in SAFplus, not
 * in saCkptDispatch(); the name, vector, ids and data it is handed are valid
 * until it returns. A NULL callback ends the registration. It needs a handle
 * opened for reading; a handle that created the checkpoint must have passed
 * CL_CKPT_DISTRIBUTED in its creation flags (accepted by the safplus profile,
 * CKPT_SA_PROFILE=safplus).
 *
 * clCkptSectionCheck(): CL_OK if the section exists, CL_CKPT_ERR_NOT_EXIST
 * if not.
 *
 * Return codes: CL_OK (0) or the checkpoint component (0x16) in the upper 16
 * bits with a common error code below; CL_GET_ERROR_CODE() extracts it.
 */
#ifndef CKPT_CL_CKPT_HOT_STANDBY_H
#define CKPT_CL_CKPT_HOT_STANDBY_H

#include "saCkpt.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef _CL_COMMON_H_
typedef unsigned char ClUint8T;
typedef unsigned short ClUint16T;
typedef unsigned int ClUint32T;
typedef unsigned long long ClUint64T;
typedef long long ClInt64T;
typedef char ClCharT;
typedef void *ClPtrT;
typedef ClUint32T ClRcT;
typedef ClUint64T ClHandleT;
typedef ClUint64T ClSizeT;
typedef ClInt64T ClOffsetT;

#define CL_MAX_NAME_LENGTH 256

/* 258 bytes: the classic SaNameT's layout. */
typedef struct {
	ClUint16T length;
	ClCharT value[CL_MAX_NAME_LENGTH];
} ClNameT;
#endif

#ifndef _CL_COMMON_ERRORS_H_
#define CL_OK 0x00
#define CL_ERR_INVALID_PARAMETER 0x02
#define CL_ERR_NOT_EXIST 0x04
#define CL_ERR_INVALID_HANDLE 0x05
#define CL_ERR_UNSPECIFIED 0x11
#define CL_ERR_TRY_AGAIN 0x16
#define CL_ERR_OP_NOT_PERMITTED 0x20
#define CL_GET_ERROR_CODE(RC) ((ClUint32T)((RC) & 0xffff))
#define CL_GET_CID(RC) ((ClUint32T)((RC) >> 16))
#endif

#ifndef _CL_CKPT_ERRORS_H_
#define CL_CKPT_ERR_INVALID_PARAMETER 0x160002u
#define CL_CKPT_ERR_NOT_EXIST 0x160004u
#define CL_CKPT_ERR_INVALID_HANDLE 0x160005u
#define CL_CKPT_ERR_UNSPECIFIED 0x160011u
#define CL_CKPT_ERR_TRY_AGAIN 0x160016u
#define CL_CKPT_ERR_OP_NOT_PERMITTED 0x160020u
#endif

#ifndef _CL_CKPT_API_H_
/* SAFplus's creation flag for hot-standby checkpoints. */
#define CL_CKPT_DISTRIBUTED 0x10

typedef ClHandleT ClCkptHdlT;

/* The layout of SaCkptSectionIdT. */
typedef struct {
	ClUint16T idLen;
	ClUint8T *id;
} ClCkptSectionIdT;

/* 48 bytes: the layout of SaCkptIOVectorElementT. */
typedef struct {
	ClCkptSectionIdT sectionId;
	ClPtrT dataBuffer;
	ClSizeT dataSize;
	ClOffsetT dataOffset;
	ClSizeT readSize;
} ClCkptIOVectorElementT;

typedef ClRcT (*ClCkptNotificationCallbackT)(
	ClCkptHdlT ckptHdl,
	ClNameT *pName,
	ClCkptIOVectorElementT *pIOVector,
	ClUint32T numSections,
	ClPtrT pCookie);

ClRcT clCkptImmediateConsumptionRegister(
	ClCkptHdlT checkpointHandle,
	ClCkptNotificationCallbackT callback,
	ClPtrT pCookie);
#endif

#ifndef _CL_CKPT_IPI_H_
ClRcT clCkptSectionCheck(ClCkptHdlT ckptHdl, ClCkptSectionIdT *pSectionId);
#endif

#ifdef __cplusplus
}
#endif

#endif /* CKPT_CL_CKPT_HOT_STANDBY_H */
