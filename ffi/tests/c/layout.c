/*
 * layout.c: the headers' ABI on x86_64 LP64. Sizes and offsets of every
 * type and struct (the OpenSAF / openais / SAFplus layout), and the value of
 * every constant and enum member. Needs no checkpoint service: it only
 * links against libSaCkpt.
 */
#include "check.h"

#include <stddef.h>

#include <saCkpt.h>
#include <saCkpt_B_02_03.h>

/* The time and flag constants are plain integer constants, usable in #if
   (as in the OpenSAF and openais headers). */
#if SA_TIME_END != 0x7FFFFFFFFFFFFFFFLL || SA_TIME_UNKNOWN >= 0 || \
	SA_TIME_ONE_DAY != 86400000000000LL || SA_MAX_NAME_LENGTH != 256 || \
	SA_CKPT_CHECKPOINT_COLLOCATED != 8 || SA_CKPT_CHECKPOINT_CREATE != 4
#error "constants of saAis.h / saCkpt.h"
#endif

#define SIZE(type, n) CHECK_INT(sizeof(type), n)
#define ALIGN(type, n) CHECK_INT(offsetof(struct { char c; type t; }, t), n)
#define OFF(type, field, n) CHECK_INT(offsetof(type, field), n)

static void base_types(void)
{
	SIZE(SaInt8T, 1);
	SIZE(SaInt16T, 2);
	SIZE(SaInt32T, 4);
	SIZE(SaInt64T, 8);
	SIZE(SaUint8T, 1);
	SIZE(SaUint16T, 2);
	SIZE(SaUint32T, 4);
	SIZE(SaUint64T, 8);
	SIZE(SaFloatT, 4);
	SIZE(SaDoubleT, 8);
	SIZE(SaStringT, 8);
	SIZE(SaConstStringT, 8);
	SIZE(SaTimeT, 8);
	SIZE(SaInvocationT, 8);
	SIZE(SaSizeT, 8);
	SIZE(SaOffsetT, 8);
	SIZE(SaSelectionObjectT, 8);
	SIZE(SaBoolT, 4);
	SIZE(SaAisErrorT, 4);
	SIZE(SaDispatchFlagsT, 4);
	SIZE(SaServicesT, 4);

	/* Signedness. */
	CHECK((SaInt16T)-1 < 0);
	CHECK((SaInt32T)-1 < 0);
	CHECK((SaInt64T)-1 < 0);
	CHECK((SaTimeT)-1 < 0);
	CHECK((SaUint8T)-1 > 0);
	CHECK((SaUint16T)-1 > 0);
	CHECK((SaUint32T)-1 > 0);
	CHECK((SaUint64T)-1 > 0);
	CHECK((SaSizeT)-1 > 0);
	CHECK((SaOffsetT)-1 > 0);
	CHECK((SaInvocationT)-1 > 0);
	CHECK((SaSelectionObjectT)-1 > 0);

	SIZE(SaAnyT, 16);
	ALIGN(SaAnyT, 8);
	OFF(SaAnyT, bufferSize, 0);
	OFF(SaAnyT, bufferAddr, 8);

	SIZE(SaLimitValueT, 8);
	ALIGN(SaLimitValueT, 8);

	SIZE(SaNameT, 258);
	ALIGN(SaNameT, 2);
	OFF(SaNameT, length, 0);
	OFF(SaNameT, value, 2);
	SIZE(((SaNameT *)0)->value, 256);

	SIZE(SaVersionT, 3);
	ALIGN(SaVersionT, 1);
	OFF(SaVersionT, releaseCode, 0);
	OFF(SaVersionT, majorVersion, 1);
	OFF(SaVersionT, minorVersion, 2);
}

static void ckpt_types(void)
{
	SIZE(SaCkptHandleT, 8);
	SIZE(SaCkptCheckpointHandleT, 8);
	SIZE(SaCkptSectionIterationHandleT, 8);
	SIZE(SaCkptCheckpointCreationFlagsT, 4);
	SIZE(SaCkptCheckpointOpenFlagsT, 4);
	SIZE(SaCkptSectionStateT, 4);
	SIZE(SaCkptSectionsChosenT, 4);
	SIZE(SaCkptCheckpointStatusT, 4);
	SIZE(SaCkptStateT, 4);
	CHECK((SaCkptCheckpointCreationFlagsT)-1 > 0);
	CHECK((SaCkptCheckpointOpenFlagsT)-1 > 0);
	CHECK((SaCkptHandleT)-1 > 0);

	SIZE(SaCkptCheckpointCreationAttributesT, 48);
	ALIGN(SaCkptCheckpointCreationAttributesT, 8);
	OFF(SaCkptCheckpointCreationAttributesT, creationFlags, 0);
	OFF(SaCkptCheckpointCreationAttributesT, checkpointSize, 8);
	OFF(SaCkptCheckpointCreationAttributesT, retentionDuration, 16);
	OFF(SaCkptCheckpointCreationAttributesT, maxSections, 24);
	OFF(SaCkptCheckpointCreationAttributesT, maxSectionSize, 32);
	OFF(SaCkptCheckpointCreationAttributesT, maxSectionIdSize, 40);

	SIZE(SaCkptSectionIdT, 16);
	ALIGN(SaCkptSectionIdT, 8);
	OFF(SaCkptSectionIdT, idLen, 0);
	OFF(SaCkptSectionIdT, id, 8);

	SIZE(SaCkptSectionCreationAttributesT, 16);
	ALIGN(SaCkptSectionCreationAttributesT, 8);
	OFF(SaCkptSectionCreationAttributesT, sectionId, 0);
	OFF(SaCkptSectionCreationAttributesT, expirationTime, 8);

	SIZE(SaCkptSectionDescriptorT, 48);
	ALIGN(SaCkptSectionDescriptorT, 8);
	OFF(SaCkptSectionDescriptorT, sectionId, 0);
	OFF(SaCkptSectionDescriptorT, expirationTime, 16);
	OFF(SaCkptSectionDescriptorT, sectionSize, 24);
	OFF(SaCkptSectionDescriptorT, sectionState, 32);
	OFF(SaCkptSectionDescriptorT, lastUpdate, 40);

	SIZE(SaCkptIOVectorElementT, 48);
	ALIGN(SaCkptIOVectorElementT, 8);
	OFF(SaCkptIOVectorElementT, sectionId, 0);
	OFF(SaCkptIOVectorElementT, dataBuffer, 16);
	OFF(SaCkptIOVectorElementT, dataSize, 24);
	OFF(SaCkptIOVectorElementT, dataOffset, 32);
	OFF(SaCkptIOVectorElementT, readSize, 40);

	SIZE(SaCkptCheckpointDescriptorT, 64);
	ALIGN(SaCkptCheckpointDescriptorT, 8);
	OFF(SaCkptCheckpointDescriptorT, checkpointCreationAttributes, 0);
	OFF(SaCkptCheckpointDescriptorT, numberOfSections, 48);
	OFF(SaCkptCheckpointDescriptorT, memoryUsed, 56);

	SIZE(SaCkptCallbacksT, 16);
	ALIGN(SaCkptCallbacksT, 8);
	OFF(SaCkptCallbacksT, saCkptCheckpointOpenCallback, 0);
	OFF(SaCkptCallbacksT, saCkptCheckpointSynchronizeCallback, 8);

	SIZE(SaCkptCallbacksT_2, 24);
	ALIGN(SaCkptCallbacksT_2, 8);
	OFF(SaCkptCallbacksT_2, saCkptCheckpointOpenCallback, 0);
	OFF(SaCkptCallbacksT_2, saCkptCheckpointSynchronizeCallback, 8);
	OFF(SaCkptCallbacksT_2, saCkptCheckpointTrackCallback, 16);
}

static void base_constants(void)
{
	SIZE(SA_TIME_END, 8);
	SIZE(SA_TIME_UNKNOWN, 8);
	SIZE(SA_TIME_ONE_MICROSECOND, 8);
	CHECK_INT(SA_TIME_END, 0x7FFFFFFFFFFFFFFFULL);
	CHECK_INT(SA_TIME_MAX, 0x7FFFFFFFFFFFFFFFULL);
	CHECK_INT(SA_TIME_BEGIN, 0);
	CHECK_INT(SA_TIME_UNKNOWN, 0x8000000000000000ULL);
	CHECK(SA_TIME_UNKNOWN < 0);
	CHECK_INT(SA_TIME_ONE_MICROSECOND, 1000ULL);
	CHECK_INT(SA_TIME_ONE_MILLISECOND, 1000000ULL);
	CHECK_INT(SA_TIME_ONE_SECOND, 1000000000ULL);
	CHECK_INT(SA_TIME_ONE_MINUTE, 60000000000ULL);
	CHECK_INT(SA_TIME_ONE_HOUR, 3600000000000ULL);
	CHECK_INT(SA_TIME_ONE_DAY, 86400000000000ULL);
	CHECK_INT(SA_MAX_NAME_LENGTH, 256);

	CHECK_INT(SA_FALSE, 0);
	CHECK_INT(SA_TRUE, 1);

	CHECK_INT(SA_TRACK_CURRENT, 0x01);
	CHECK_INT(SA_TRACK_CHANGES, 0x02);
	CHECK_INT(SA_TRACK_CHANGES_ONLY, 0x04);
	CHECK_INT(SA_TRACK_LOCAL, 0x08);
	CHECK_INT(SA_TRACK_START_STEP, 0x10);
	CHECK_INT(SA_TRACK_VALIDATE_STEP, 0x20);

	CHECK_INT(SA_DISPATCH_ONE, 1);
	CHECK_INT(SA_DISPATCH_ALL, 2);
	CHECK_INT(SA_DISPATCH_BLOCKING, 3);

	CHECK_INT(SA_SVC_HPI, 1);
	CHECK_INT(SA_SVC_AMF, 2);
	CHECK_INT(SA_SVC_CLM, 3);
	CHECK_INT(SA_SVC_CKPT, 4);
	CHECK_INT(SA_SVC_EVT, 5);
	CHECK_INT(SA_SVC_MSG, 6);
	CHECK_INT(SA_SVC_LCK, 7);
	CHECK_INT(SA_SVC_IMMS, 8);
	CHECK_INT(SA_SCV_LOG, 9);
	CHECK_INT(SA_SVC_NTF, 10);
	CHECK_INT(SA_SVC_NAM, 11);
	CHECK_INT(SA_SVC_TMR, 12);
	CHECK_INT(SA_SVC_SMF, 13);
	CHECK_INT(SA_SVC_SEC, 14);
	CHECK_INT(SA_SVC_PLM, 15);
}

static void error_codes(void)
{
	CHECK_INT(SA_AIS_OK, 1);
	CHECK_INT(SA_AIS_ERR_LIBRARY, 2);
	CHECK_INT(SA_AIS_ERR_VERSION, 3);
	CHECK_INT(SA_AIS_ERR_INIT, 4);
	CHECK_INT(SA_AIS_ERR_TIMEOUT, 5);
	CHECK_INT(SA_AIS_ERR_TRY_AGAIN, 6);
	CHECK_INT(SA_AIS_ERR_INVALID_PARAM, 7);
	CHECK_INT(SA_AIS_ERR_NO_MEMORY, 8);
	CHECK_INT(SA_AIS_ERR_BAD_HANDLE, 9);
	CHECK_INT(SA_AIS_ERR_BUSY, 10);
	CHECK_INT(SA_AIS_ERR_ACCESS, 11);
	CHECK_INT(SA_AIS_ERR_NOT_EXIST, 12);
	CHECK_INT(SA_AIS_ERR_NAME_TOO_LONG, 13);
	CHECK_INT(SA_AIS_ERR_EXIST, 14);
	CHECK_INT(SA_AIS_ERR_NO_SPACE, 15);
	CHECK_INT(SA_AIS_ERR_INTERRUPT, 16);
	CHECK_INT(SA_AIS_ERR_NAME_NOT_FOUND, 17);
	CHECK_INT(SA_AIS_ERR_NO_RESOURCES, 18);
	CHECK_INT(SA_AIS_ERR_NOT_SUPPORTED, 19);
	CHECK_INT(SA_AIS_ERR_BAD_OPERATION, 20);
	CHECK_INT(SA_AIS_ERR_FAILED_OPERATION, 21);
	CHECK_INT(SA_AIS_ERR_MESSAGE_ERROR, 22);
	CHECK_INT(SA_AIS_ERR_QUEUE_FULL, 23);
	CHECK_INT(SA_AIS_ERR_QUEUE_NOT_AVAILABLE, 24);
	CHECK_INT(SA_AIS_ERR_BAD_FLAGS, 25);
	CHECK_INT(SA_AIS_ERR_TOO_BIG, 26);
	CHECK_INT(SA_AIS_ERR_NO_SECTIONS, 27);
	CHECK_INT(SA_AIS_ERR_NO_OP, 28);
	CHECK_INT(SA_AIS_ERR_REPAIR_PENDING, 29);
	CHECK_INT(SA_AIS_ERR_NO_BINDINGS, 30);
	CHECK_INT(SA_AIS_ERR_UNAVAILABLE, 31);
	CHECK_INT(SA_AIS_ERR_CAMPAIGN_ERROR_DETECTED, 32);
	CHECK_INT(SA_AIS_ERR_CAMPAIGN_PROC_FAILED, 33);
	CHECK_INT(SA_AIS_ERR_CAMPAIGN_CANCELED, 34);
	CHECK_INT(SA_AIS_ERR_CAMPAIGN_FAILED, 35);
	CHECK_INT(SA_AIS_ERR_CAMPAIGN_SUSPENDED, 36);
	CHECK_INT(SA_AIS_ERR_CAMPAIGN_SUSPENDING, 37);
	CHECK_INT(SA_AIS_ERR_ACCESS_DENIED, 38);
	CHECK_INT(SA_AIS_ERR_NOT_READY, 39);
	CHECK_INT(SA_AIS_ERR_DEPLOYMENT, 40);
}

static void ckpt_constants(void)
{
	SaCkptSectionIdT def = SA_CKPT_DEFAULT_SECTION_ID;
	SaCkptSectionIdT gen = SA_CKPT_GENERATED_SECTION_ID;

	CHECK_INT(SA_CKPT_WR_ALL_REPLICAS, 0x1);
	CHECK_INT(SA_CKPT_WR_ACTIVE_REPLICA, 0x2);
	CHECK_INT(SA_CKPT_WR_ACTIVE_REPLICA_WEAK, 0x4);
	CHECK_INT(SA_CKPT_CHECKPOINT_COLLOCATED, 0x8);
	CHECK_INT(SA_CKPT_CHECKPOINT_READ, 0x1);
	CHECK_INT(SA_CKPT_CHECKPOINT_WRITE, 0x2);
	CHECK_INT(SA_CKPT_CHECKPOINT_CREATE, 0x4);

	CHECK_INT(def.idLen, 0);
	CHECK(def.id == NULL);
	CHECK_INT(gen.idLen, 0);
	CHECK(gen.id == NULL);

	CHECK_INT(SA_CKPT_SECTION_VALID, 1);
	CHECK_INT(SA_CKPT_SECTION_CORRUPTED, 2);

	CHECK_INT(SA_CKPT_SECTIONS_FOREVER, 1);
	CHECK_INT(SA_CKPT_SECTIONS_LEQ_EXPIRATION_TIME, 2);
	CHECK_INT(SA_CKPT_SECTIONS_GEQ_EXPIRATION_TIME, 3);
	CHECK_INT(SA_CKPT_SECTIONS_CORRUPTED, 4);
	CHECK_INT(SA_CKPT_SECTIONS_ANY, 5);

	CHECK_INT(SA_CKPT_SECTION_RESOURCES_EXHAUSTED, 1);
	CHECK_INT(SA_CKPT_SECTION_RESOURCES_AVAILABLE, 2);
	CHECK_INT(SA_CKPT_CHECKPOINT_STATUS, 1);
}

/* Every declared function resolves in the library (the program would not
   link otherwise); the pointers are compared so none is optimized out. */
static void functions(void)
{
	void (*const fns[])(void) = {
		(void (*)(void))saCkptInitialize,
		(void (*)(void))saCkptSelectionObjectGet,
		(void (*)(void))saCkptDispatch,
		(void (*)(void))saCkptFinalize,
		(void (*)(void))saCkptCheckpointOpen,
		(void (*)(void))saCkptCheckpointOpenAsync,
		(void (*)(void))saCkptCheckpointClose,
		(void (*)(void))saCkptCheckpointUnlink,
		(void (*)(void))saCkptCheckpointRetentionDurationSet,
		(void (*)(void))saCkptActiveReplicaSet,
		(void (*)(void))saCkptCheckpointStatusGet,
		(void (*)(void))saCkptSectionCreate,
		(void (*)(void))saCkptSectionDelete,
		(void (*)(void))saCkptSectionIdFree,
		(void (*)(void))saCkptSectionExpirationTimeSet,
		(void (*)(void))saCkptSectionIterationInitialize,
		(void (*)(void))saCkptSectionIterationNext,
		(void (*)(void))saCkptSectionIterationFinalize,
		(void (*)(void))saCkptCheckpointWrite,
		(void (*)(void))saCkptSectionOverwrite,
		(void (*)(void))saCkptCheckpointRead,
		(void (*)(void))saCkptIOVectorElementDataFree,
		(void (*)(void))saCkptCheckpointSynchronize,
		(void (*)(void))saCkptCheckpointSynchronizeAsync,
		(void (*)(void))saCkptInitialize_2,
		(void (*)(void))saCkptTrack,
		(void (*)(void))saCkptTrackStop,
		(void (*)(void))saCkptCheckpointTrack,
		(void (*)(void))saCkptCheckpointTrackStop,
		(void (*)(void))ncsCkptRegisterCkptArrivalCallback,
	};
	size_t i;

	CHECK_INT(sizeof fns / sizeof fns[0], 30);
	for (i = 0; i < sizeof fns / sizeof fns[0]; i++)
		CHECK(fns[i] != NULL);
}

int main(void)
{
	CHECK_START("layout");
	base_types();
	ckpt_types();
	base_constants();
	error_codes();
	ckpt_constants();
	functions();
	return CHECK_DONE();
}
