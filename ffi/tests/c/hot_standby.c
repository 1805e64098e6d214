/*
 * hot_standby.c: SAFplus-style hot standby (clCkptHotStandby.h), the way
 * SAFplus's hot-standby example does it: both sides open the checkpoint with
 * COLLOCATED | CL_CKPT_DISTRIBUTED (profile safplus), the active sets itself
 * active, the standby registers for immediate consumption and receives the
 * changed sections' whole contents on a library thread, without reading.
 *
 *   - a sequence written by another instance, then by another process, each
 *     arrives in order and ends at its last value;
 *   - the standby's own writes are not handed back to it;
 *   - a callback that stalls while the writer laps the log still ends with
 *     the last value (the sections as they are stand for what was lost);
 *   - a NULL callback ends the registration;
 *   - a callback may close its own handle;
 *   - refusals: created without CL_CKPT_DISTRIBUTED, not opened for reading,
 *     stale and garbage handles; clCkptSectionCheck's answers.
 */
#include "check.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#include <saCkpt.h>
#include <clCkptHotStandby.h>

#define CRW (SA_CKPT_CHECKPOINT_CREATE | SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* What the callback saw (under `lock`: it runs on a library thread). */
static struct {
	unsigned calls, bad, regressions, other_sections;
	SaUint32T last;
	int stall_ms;		/* the next call sleeps this long first */
	int close_self;		/* the next call closes its handle */
	SaAisErrorT close_result;
} got;

static SaCkptCheckpointHandleT expected;
static SaNameT expected_name;
static SaUint32T section_one = 1;

static SaUint32T seen_last(void)
{
	SaUint32T v;

	pthread_mutex_lock(&lock);
	v = got.last;
	pthread_mutex_unlock(&lock);
	return v;
}

static unsigned seen_calls(void)
{
	unsigned v;

	pthread_mutex_lock(&lock);
	v = got.calls;
	pthread_mutex_unlock(&lock);
	return v;
}

static ClRcT on_update(ClCkptHdlT h, ClNameT *name, ClCkptIOVectorElementT *iov,
		       ClUint32T n, ClPtrT cookie)
{
	ClUint32T i;
	int stall;

	pthread_mutex_lock(&lock);
	stall = got.stall_ms;
	got.stall_ms = 0;
	pthread_mutex_unlock(&lock);
	if (stall > 0)
		ck_sleep_ms(stall);

	pthread_mutex_lock(&lock);
	got.calls++;
	if (h != expected || cookie != (ClPtrT)&got || n == 0)
		got.bad++;
	if (name->length != expected_name.length ||
	    memcmp(name->value, expected_name.value, name->length) != 0)
		got.bad++;
	for (i = 0; i < n; i++) {
		SaUint32T v;

		if (iov[i].sectionId.idLen != sizeof section_one ||
		    memcmp(iov[i].sectionId.id, &section_one, sizeof section_one) != 0) {
			got.other_sections++;
			continue;
		}
		if (iov[i].dataOffset != 0 || iov[i].dataSize != sizeof v ||
		    iov[i].readSize != sizeof v || iov[i].dataBuffer == NULL) {
			got.bad++;
			continue;
		}
		memcpy(&v, iov[i].dataBuffer, sizeof v);
		if (v < got.last)
			got.regressions++;
		got.last = v;
	}
	if (got.close_self) {
		got.close_self = 0;
		got.close_result = saCkptCheckpointClose(h);
	}
	pthread_mutex_unlock(&lock);
	return CL_OK;
}

/* Waits up to 5 s for the callback to have seen `value`. */
static int wait_last(SaUint32T value)
{
	int i;

	for (i = 0; i < 500 && seen_last() != value; i++)
		ck_sleep_ms(10);
	return seen_last() == value;
}

static SaCkptCheckpointCreationAttributesT attributes(SaUint32T flags)
{
	SaCkptCheckpointCreationAttributesT a;

	a.creationFlags = flags;
	a.checkpointSize = 2 * sizeof(SaUint32T);
	a.retentionDuration = SA_TIME_ONE_SECOND;
	a.maxSections = 2;
	a.maxSectionSize = sizeof(SaUint32T);
	a.maxSectionIdSize = sizeof(SaUint32T);
	return a;
}

static void overwrite_range(SaCkptCheckpointHandleT h, SaUint32T from, SaUint32T to)
{
	SaCkptSectionIdT id;
	SaUint32T v;

	id.idLen = sizeof section_one;
	id.id = (SaUint8T *)&section_one;
	for (v = from; v <= to; v++)
		if (!CHECK_EQ(saCkptSectionOverwrite(h, &id, &v, sizeof v), SA_AIS_OK))
			return;
}

/* A writer process: its own library instance, the values from..to. */
static int child_writer(SaUint32T from, SaUint32T to)
{
	SaVersionT version = CK_VERSION_INIT;
	SaCkptHandleT lib;
	SaCkptCheckpointHandleT h;

	if (saCkptInitialize(&lib, NULL, &version) != SA_AIS_OK)
		return 2;
	if (saCkptCheckpointOpen(lib, &expected_name, NULL, SA_CKPT_CHECKPOINT_WRITE,
				 CK_TIMEOUT, &h) != SA_AIS_OK)
		return 3;
	overwrite_range(h, from, to);
	return ck_failures == 0 && saCkptFinalize(lib) == SA_AIS_OK ? 0 : 4;
}

int main(void)
{
	SaVersionT version = CK_VERSION_INIT;
	SaCkptHandleT lib_active, lib_standby;
	SaCkptCheckpointHandleT active, standby, writer_only, plain;
	SaCkptCheckpointCreationAttributesT hot =
		attributes(SA_CKPT_CHECKPOINT_COLLOCATED | CL_CKPT_DISTRIBUTED);
	SaCkptCheckpointCreationAttributesT cold =
		attributes(SA_CKPT_WR_ACTIVE_REPLICA | SA_CKPT_CHECKPOINT_COLLOCATED);
	SaCkptSectionCreationAttributesT section;
	SaCkptSectionIdT id;
	ClCkptSectionIdT cid, nope, malformed;
	SaNameT cold_name;
	SaUint32T zero = 0, mine = 999999, nope_id = 7;
	unsigned calls;
	pid_t child;
	int status;

	CHECK_START("hot_standby");
	setenv("CKPT_SA_PROFILE", "safplus", 1);
	ck_name(&expected_name, "hot", "ckpt");
	ck_name(&cold_name, "hot", "cold");
	id.idLen = sizeof section_one;
	id.id = (SaUint8T *)&section_one;
	cid.idLen = sizeof section_one;
	cid.id = (ClUint8T *)&section_one;
	nope.idLen = sizeof nope_id;
	nope.id = (ClUint8T *)&nope_id;
	malformed.idLen = 4;
	malformed.id = NULL;

	if (!CHECK_EQ(saCkptInitialize(&lib_active, NULL, &version), SA_AIS_OK) ||
	    !CHECK_EQ(saCkptInitialize(&lib_standby, NULL, &version), SA_AIS_OK))
		return CHECK_DONE();

	/* Both sides open as SAFplus's example does; the active takes over. */
	if (!CHECK_EQ(saCkptCheckpointOpen(lib_active, &expected_name, &hot, CRW,
					   CK_TIMEOUT, &active), SA_AIS_OK) ||
	    !CHECK_EQ(saCkptCheckpointOpen(lib_standby, &expected_name, &hot, CRW,
					   CK_TIMEOUT, &standby), SA_AIS_OK))
		return CHECK_DONE();
	CHECK_EQ(saCkptActiveReplicaSet(active), SA_AIS_OK);
	expected = standby;
	CHECK_INT(clCkptImmediateConsumptionRegister(standby, on_update, &got), CL_OK);

	/* clCkptSectionCheck before and after the section exists. */
	CHECK_INT(clCkptSectionCheck(standby, &cid), CL_CKPT_ERR_NOT_EXIST);
	CHECK_INT(CL_GET_ERROR_CODE(clCkptSectionCheck(standby, &cid)), CL_ERR_NOT_EXIST);
	section.sectionId = &id;
	section.expirationTime = SA_TIME_END;
	CHECK_EQ(saCkptSectionCreate(active, &section, &zero, sizeof zero), SA_AIS_OK);
	CHECK_INT(clCkptSectionCheck(standby, &cid), CL_OK);
	CHECK_INT(clCkptSectionCheck(active, &nope), CL_CKPT_ERR_NOT_EXIST);
	CHECK_INT(clCkptSectionCheck(standby, NULL), CL_CKPT_ERR_INVALID_PARAMETER);
	CHECK_INT(clCkptSectionCheck(standby, &malformed), CL_CKPT_ERR_INVALID_PARAMETER);
	CHECK_INT(clCkptSectionCheck(0, &cid), CL_CKPT_ERR_INVALID_HANDLE);

	/* Another instance's sequence arrives, in order, to its last value. */
	overwrite_range(active, 1, 1000);
	CHECK(wait_last(1000));

	/* The standby's own write is not handed back; the next one is. */
	CHECK_EQ(saCkptSectionOverwrite(standby, &id, &mine, sizeof mine), SA_AIS_OK);
	overwrite_range(active, 1001, 1001);
	CHECK(wait_last(1001));

	/* Another process's sequence. */
	child = fork();
	if (child == 0)
		_exit(child_writer(2001, 3000));
	if (CHECK(child > 0)) {
		CHECK(waitpid(child, &status, 0) == child);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		CHECK(wait_last(3000));
	}

	/* The callback stalls while the writer laps the log (a 64 KiB ring of
	   ~80-byte frames) and stops: the last value still arrives. */
	pthread_mutex_lock(&lock);
	got.stall_ms = 300;
	pthread_mutex_unlock(&lock);
	overwrite_range(active, 3001, 3001);
	ck_sleep_ms(50);
	overwrite_range(active, 3002, 20000);
	CHECK(wait_last(20000));

	/* A NULL callback ends the registration. */
	CHECK_INT(clCkptImmediateConsumptionRegister(standby, NULL, NULL), CL_OK);
	ck_sleep_ms(50);
	calls = seen_calls();
	overwrite_range(active, 20001, 20001);
	ck_sleep_ms(200);
	CHECK_INT(seen_calls(), calls);
	CHECK_INT(seen_last(), 20000);

	/* Registered again: the next change arrives; the callback closes its own
	   handle (no deadlock), which then is stale. */
	CHECK_INT(clCkptImmediateConsumptionRegister(standby, on_update, &got), CL_OK);
	pthread_mutex_lock(&lock);
	got.close_self = 1;
	pthread_mutex_unlock(&lock);
	overwrite_range(active, 20002, 20002);
	CHECK(wait_last(20002));
	ck_sleep_ms(50);
	pthread_mutex_lock(&lock);
	CHECK_EQ(got.close_result, SA_AIS_OK);
	pthread_mutex_unlock(&lock);
	CHECK_EQ(saCkptCheckpointClose(standby), SA_AIS_ERR_BAD_HANDLE);
	CHECK_INT(clCkptImmediateConsumptionRegister(standby, on_update, &got),
		  CL_CKPT_ERR_INVALID_HANDLE);

	/* Refusals. */
	CHECK_INT(clCkptImmediateConsumptionRegister(0, on_update, NULL),
		  CL_CKPT_ERR_INVALID_HANDLE);
	CHECK_INT(clCkptImmediateConsumptionRegister(0x123456789abcdefULL, on_update, NULL),
		  CL_CKPT_ERR_INVALID_HANDLE);
	CHECK_INT(clCkptImmediateConsumptionRegister(lib_standby, on_update, NULL),
		  CL_CKPT_ERR_INVALID_HANDLE);
	if (CHECK_EQ(saCkptCheckpointOpen(lib_standby, &expected_name, NULL,
					  SA_CKPT_CHECKPOINT_WRITE, CK_TIMEOUT,
					  &writer_only), SA_AIS_OK))
		CHECK_INT(clCkptImmediateConsumptionRegister(writer_only, on_update, NULL),
			  CL_CKPT_ERR_OP_NOT_PERMITTED);
	if (CHECK_EQ(saCkptCheckpointOpen(lib_standby, &cold_name, &cold, CRW,
					  CK_TIMEOUT, &plain), SA_AIS_OK)) {
		CHECK_INT(clCkptImmediateConsumptionRegister(plain, on_update, NULL),
			  CL_CKPT_ERR_OP_NOT_PERMITTED);
		CHECK_INT(CL_GET_CID(clCkptImmediateConsumptionRegister(plain, on_update, NULL)),
			  0x16);
		CHECK_EQ(saCkptCheckpointUnlink(lib_standby, &cold_name), SA_AIS_OK);
	}

	pthread_mutex_lock(&lock);
	CHECK_INT(got.bad, 0);
	CHECK_INT(got.regressions, 0);
	CHECK_INT(got.other_sections, 0);
	CHECK(got.last != mine);
	pthread_mutex_unlock(&lock);

	CHECK_EQ(saCkptCheckpointUnlink(lib_active, &expected_name), SA_AIS_OK);
	CHECK_EQ(saCkptFinalize(lib_standby), SA_AIS_OK);
	CHECK_EQ(saCkptFinalize(lib_active), SA_AIS_OK);
	return CHECK_DONE();
}
