/*
 * saCkpt_B_02_03.h: ckpt's own header for the NON-STANDARD "B.02.03"
 * checkpoint track API of the SA Forum AIS Checkpoint Service, as OpenSAF
 * proposed it, and for OpenSAF's older arrival-callback registration.
 * libSaCkpt exports these functions for programs written against OpenSAF.
 *
 * A track callback is a change notification without data: after a write,
 * an overwrite or a section creation with data, each element names the
 * section, dataSize and dataOffset, with dataBuffer NULL and readSize 0;
 * the program calls saCkptCheckpointRead() for the data.
 *
 * saCkptTrack() and saCkptTrackStop() require a handle initialized with
 * version B.02.03 and a track callback. Per-checkpoint tracking,
 * saCkptCheckpointTrack() and saCkptCheckpointTrackStop(), answers
 * SA_AIS_ERR_NOT_SUPPORTED in OpenSAF.
 */
#ifndef CKPT_SA_CKPT_B_02_03_H
#define CKPT_SA_CKPT_B_02_03_H

#include "saCkpt.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*SaCkptCheckpointTrackCallbackT)(
	SaCkptCheckpointHandleT checkpointHandle,
	SaCkptIOVectorElementT *ioVector,
	SaUint32T numberOfElements);

/* 24 bytes, align 8: SaCkptCallbacksT plus the track callback. */
typedef struct {
	SaCkptCheckpointOpenCallbackT saCkptCheckpointOpenCallback;
	SaCkptCheckpointSynchronizeCallbackT saCkptCheckpointSynchronizeCallback;
	SaCkptCheckpointTrackCallbackT saCkptCheckpointTrackCallback;
} SaCkptCallbacksT_2;

SaAisErrorT saCkptInitialize_2(
	SaCkptHandleT *ckptHandle,
	const SaCkptCallbacksT_2 *callbacks,
	SaVersionT *version);

SaAisErrorT saCkptTrack(
	SaCkptHandleT ckptHandle);

SaAisErrorT saCkptTrackStop(
	SaCkptHandleT ckptHandle);

SaAisErrorT saCkptCheckpointTrack(
	SaCkptCheckpointHandleT checkpointHandle);

SaAisErrorT saCkptCheckpointTrackStop(
	SaCkptCheckpointHandleT checkpointHandle);

/* OpenSAF's older name for the same notification (cpsv_papi.h). */
typedef void (*ncsCkptCkptArrivalCallbackT)(
	const SaCkptCheckpointHandleT checkpointHandle,
	SaCkptIOVectorElementT *ioVector,
	SaUint32T numberOfElements);

SaAisErrorT ncsCkptRegisterCkptArrivalCallback(
	SaCkptHandleT ckptHandle,
	ncsCkptCkptArrivalCallbackT ckptArrivalCallback);

#ifdef __cplusplus
}
#endif

#endif /* CKPT_SA_CKPT_B_02_03_H */
