/*
 * saCkpt.h: ckpt's own header for the SA Forum AIS Checkpoint Service API,
 * SAI-AIS-CKPT-B.02.02 (types, constants and the 24 functions), as
 * implemented by libSaCkpt (link with -lSaCkpt).
 *
 * Programs written for B.01.01 compile unchanged: B.02.02 only adds
 * saCkptSectionIdFree(), saCkptIOVectorElementDataFree() and the
 * notification enums. Struct layouts are those of the OpenSAF, openais and
 * SAFplus headers; sizes and offsets on x86_64 LP64 are noted per struct.
 * OpenSAF's non-standard B.02.03 track API is in <saCkpt_B_02_03.h>.
 */
#ifndef CKPT_SA_CKPT_H
#define CKPT_SA_CKPT_H

#include <stddef.h>

#include "saAis.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Handles --------------------------------------------------------- */

typedef SaUint64T SaCkptHandleT;
typedef SaUint64T SaCkptCheckpointHandleT;
typedef SaUint64T SaCkptSectionIterationHandleT;

/* ---- Checkpoint creation flags --------------------------------------- */

/* Exactly one of the three WR_* update options, optionally ORed with
   SA_CKPT_CHECKPOINT_COLLOCATED. */
#define SA_CKPT_WR_ALL_REPLICAS         0x1
#define SA_CKPT_WR_ACTIVE_REPLICA       0x2
#define SA_CKPT_WR_ACTIVE_REPLICA_WEAK  0x4
#define SA_CKPT_CHECKPOINT_COLLOCATED   0x8

typedef SaUint32T SaCkptCheckpointCreationFlagsT;

/* 48 bytes, align 8: creationFlags 0, checkpointSize 8,
   retentionDuration 16, maxSections 24, maxSectionSize 32,
   maxSectionIdSize 40. checkpointSize <= maxSections * maxSectionSize. */
typedef struct {
	SaCkptCheckpointCreationFlagsT creationFlags;
	SaSizeT checkpointSize;
	SaTimeT retentionDuration;	/* a duration */
	SaUint32T maxSections;
	SaSizeT maxSectionSize;
	SaSizeT maxSectionIdSize;
} SaCkptCheckpointCreationAttributesT;

/* ---- Checkpoint open flags ------------------------------------------- */

#define SA_CKPT_CHECKPOINT_READ    0x1
#define SA_CKPT_CHECKPOINT_WRITE   0x2
#define SA_CKPT_CHECKPOINT_CREATE  0x4

typedef SaUint32T SaCkptCheckpointOpenFlagsT;

/* ---- Sections -------------------------------------------------------- */

/* Initializers for SaCkptSectionIdT: the default section (of a checkpoint
   with maxSections == 1), and the request for a generated id in
   saCkptSectionCreate(). Both are the same value. */
#define SA_CKPT_DEFAULT_SECTION_ID    {0, NULL}
#define SA_CKPT_GENERATED_SECTION_ID  {0, NULL}

/* 16 bytes, align 8: idLen 0, id 8. */
typedef struct {
	SaUint16T idLen;
	SaUint8T *id;
} SaCkptSectionIdT;

/* 16 bytes, align 8: sectionId 0 (in/out), expirationTime 8. */
typedef struct {
	SaCkptSectionIdT *sectionId;
	SaTimeT expirationTime;		/* absolute; SA_TIME_END = never */
} SaCkptSectionCreationAttributesT;

typedef enum {
	SA_CKPT_SECTION_VALID = 1,
	SA_CKPT_SECTION_CORRUPTED = 2
} SaCkptSectionStateT;

/* 48 bytes, align 8: sectionId 0, expirationTime 16, sectionSize 24,
   sectionState 32, lastUpdate 40. */
typedef struct {
	SaCkptSectionIdT sectionId;
	SaTimeT expirationTime;		/* absolute */
	SaSizeT sectionSize;
	SaCkptSectionStateT sectionState;
	SaTimeT lastUpdate;		/* absolute */
} SaCkptSectionDescriptorT;

typedef enum {
	SA_CKPT_SECTIONS_FOREVER = 1,
	SA_CKPT_SECTIONS_LEQ_EXPIRATION_TIME = 2,
	SA_CKPT_SECTIONS_GEQ_EXPIRATION_TIME = 3,
	SA_CKPT_SECTIONS_CORRUPTED = 4,
	SA_CKPT_SECTIONS_ANY = 5
} SaCkptSectionsChosenT;

/* ---- I/O vectors ----------------------------------------------------- */

/* 48 bytes, align 8: sectionId 0, dataBuffer 16, dataSize 24,
   dataOffset 32, readSize 40. */
typedef struct {
	SaCkptSectionIdT sectionId;
	void *dataBuffer;
	SaSizeT dataSize;
	SaOffsetT dataOffset;
	SaSizeT readSize;		/* set by saCkptCheckpointRead() */
} SaCkptIOVectorElementT;

/* ---- Checkpoint status ----------------------------------------------- */

/* 64 bytes, align 8: checkpointCreationAttributes 0, numberOfSections 48,
   memoryUsed 56. */
typedef struct {
	SaCkptCheckpointCreationAttributesT checkpointCreationAttributes;
	SaUint32T numberOfSections;
	SaSizeT memoryUsed;
} SaCkptCheckpointDescriptorT;

/* For notifications (B.02.x). */
typedef enum {
	SA_CKPT_SECTION_RESOURCES_EXHAUSTED = 1,
	SA_CKPT_SECTION_RESOURCES_AVAILABLE = 2
} SaCkptCheckpointStatusT;

typedef enum {
	SA_CKPT_CHECKPOINT_STATUS = 1
} SaCkptStateT;

/* ---- Callbacks ------------------------------------------------------- */

typedef void (*SaCkptCheckpointOpenCallbackT)(
	SaInvocationT invocation,
	SaCkptCheckpointHandleT checkpointHandle,
	SaAisErrorT error);

typedef void (*SaCkptCheckpointSynchronizeCallbackT)(
	SaInvocationT invocation,
	SaAisErrorT error);

/* 16 bytes, align 8. Either member may be NULL. */
typedef struct {
	SaCkptCheckpointOpenCallbackT saCkptCheckpointOpenCallback;
	SaCkptCheckpointSynchronizeCallbackT saCkptCheckpointSynchronizeCallback;
} SaCkptCallbacksT;

/* ---- Library life cycle ---------------------------------------------- */

SaAisErrorT saCkptInitialize(
	SaCkptHandleT *ckptHandle,
	const SaCkptCallbacksT *callbacks,
	SaVersionT *version);

SaAisErrorT saCkptSelectionObjectGet(
	SaCkptHandleT ckptHandle,
	SaSelectionObjectT *selectionObject);

SaAisErrorT saCkptDispatch(
	SaCkptHandleT ckptHandle,
	SaDispatchFlagsT dispatchFlags);

SaAisErrorT saCkptFinalize(
	SaCkptHandleT ckptHandle);

/* ---- Checkpoint management ------------------------------------------- */

SaAisErrorT saCkptCheckpointOpen(
	SaCkptHandleT ckptHandle,
	const SaNameT *checkpointName,
	const SaCkptCheckpointCreationAttributesT *checkpointCreationAttributes,
	SaCkptCheckpointOpenFlagsT checkpointOpenFlags,
	SaTimeT timeout,
	SaCkptCheckpointHandleT *checkpointHandle);

SaAisErrorT saCkptCheckpointOpenAsync(
	SaCkptHandleT ckptHandle,
	SaInvocationT invocation,
	const SaNameT *checkpointName,
	const SaCkptCheckpointCreationAttributesT *checkpointCreationAttributes,
	SaCkptCheckpointOpenFlagsT checkpointOpenFlags);

SaAisErrorT saCkptCheckpointClose(
	SaCkptCheckpointHandleT checkpointHandle);

SaAisErrorT saCkptCheckpointUnlink(
	SaCkptHandleT ckptHandle,
	const SaNameT *checkpointName);

SaAisErrorT saCkptCheckpointRetentionDurationSet(
	SaCkptCheckpointHandleT checkpointHandle,
	SaTimeT retentionDuration);

SaAisErrorT saCkptActiveReplicaSet(
	SaCkptCheckpointHandleT checkpointHandle);

SaAisErrorT saCkptCheckpointStatusGet(
	SaCkptCheckpointHandleT checkpointHandle,
	SaCkptCheckpointDescriptorT *checkpointStatus);

/* ---- Section management ---------------------------------------------- */

SaAisErrorT saCkptSectionCreate(
	SaCkptCheckpointHandleT checkpointHandle,
	SaCkptSectionCreationAttributesT *sectionCreationAttributes,
	const void *initialData,
	SaSizeT initialDataSize);

SaAisErrorT saCkptSectionDelete(
	SaCkptCheckpointHandleT checkpointHandle,
	const SaCkptSectionIdT *sectionId);

/* Releases a generated id returned by saCkptSectionCreate() (B.02.x). */
SaAisErrorT saCkptSectionIdFree(
	SaCkptCheckpointHandleT checkpointHandle,
	SaUint8T *id);

SaAisErrorT saCkptSectionExpirationTimeSet(
	SaCkptCheckpointHandleT checkpointHandle,
	const SaCkptSectionIdT *sectionId,
	SaTimeT expirationTime);

SaAisErrorT saCkptSectionIterationInitialize(
	SaCkptCheckpointHandleT checkpointHandle,
	SaCkptSectionsChosenT sectionsChosen,
	SaTimeT expirationTime,
	SaCkptSectionIterationHandleT *sectionIterationHandle);

SaAisErrorT saCkptSectionIterationNext(
	SaCkptSectionIterationHandleT sectionIterationHandle,
	SaCkptSectionDescriptorT *sectionDescriptor);

SaAisErrorT saCkptSectionIterationFinalize(
	SaCkptSectionIterationHandleT sectionIterationHandle);

/* ---- Data access ----------------------------------------------------- */

SaAisErrorT saCkptCheckpointWrite(
	SaCkptCheckpointHandleT checkpointHandle,
	const SaCkptIOVectorElementT *ioVector,
	SaUint32T numberOfElements,
	SaUint32T *erroneousVectorIndex);

SaAisErrorT saCkptSectionOverwrite(
	SaCkptCheckpointHandleT checkpointHandle,
	const SaCkptSectionIdT *sectionId,
	const void *dataBuffer,
	SaSizeT dataSize);

SaAisErrorT saCkptCheckpointRead(
	SaCkptCheckpointHandleT checkpointHandle,
	SaCkptIOVectorElementT *ioVector,
	SaUint32T numberOfElements,
	SaUint32T *erroneousVectorIndex);

/* Releases a buffer saCkptCheckpointRead() allocated (B.02.x). */
SaAisErrorT saCkptIOVectorElementDataFree(
	SaCkptCheckpointHandleT checkpointHandle,
	void *data);

SaAisErrorT saCkptCheckpointSynchronize(
	SaCkptCheckpointHandleT checkpointHandle,
	SaTimeT timeout);

SaAisErrorT saCkptCheckpointSynchronizeAsync(
	SaCkptCheckpointHandleT checkpointHandle,
	SaInvocationT invocation);

#ifdef __cplusplus
}
#endif

#endif /* CKPT_SA_CKPT_H */
