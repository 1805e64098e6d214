/*
 * open.c: checkpoint management. saCkptCheckpointOpen (creation, reopening,
 * attribute and flag checks), saCkptCheckpointStatusGet,
 * saCkptCheckpointClose, saCkptCheckpointUnlink,
 * saCkptCheckpointRetentionDurationSet, retention after the last close, and
 * checkpoint handles that are closed, finalized, or not checkpoint handles.
 */
#include "check.h"

#include <saCkpt.h>

#define RW (SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE)
#define CRW (SA_CKPT_CHECKPOINT_CREATE | RW)

static SaCkptHandleT lib;

static SaCkptCheckpointCreationAttributesT base_attrs(void)
{
	SaCkptCheckpointCreationAttributesT a;

	memset(&a, 0, sizeof a);
	a.creationFlags = SA_CKPT_WR_ALL_REPLICAS;
	a.checkpointSize = 4096 * 4;
	a.retentionDuration = SA_TIME_ONE_SECOND;
	a.maxSections = 4;
	a.maxSectionSize = 4096;
	a.maxSectionIdSize = 32;
	return a;
}

static SaCkptSectionIdT sid(const char *s)
{
	SaCkptSectionIdT id;

	id.idLen = (SaUint16T)strlen(s);
	id.id = (SaUint8T *)(char *)s;
	return id;
}

static SaAisErrorT section_create(SaCkptCheckpointHandleT ck, const char *s,
				  const void *data, SaSizeT size)
{
	SaCkptSectionIdT id = sid(s);
	SaCkptSectionCreationAttributesT sa;

	sa.sectionId = &id;
	sa.expirationTime = SA_TIME_END;
	return saCkptSectionCreate(ck, &sa, data, size);
}

static SaCkptIOVectorElementT iov(const char *s, void *buf, SaSizeT size,
				  SaOffsetT off)
{
	SaCkptIOVectorElementT e;

	memset(&e, 0, sizeof e);
	e.sectionId = sid(s);
	e.dataBuffer = buf;
	e.dataSize = size;
	e.dataOffset = off;
	return e;
}

static void check_attrs(const SaCkptCheckpointCreationAttributesT *got,
			const SaCkptCheckpointCreationAttributesT *want)
{
	CHECK_INT(got->creationFlags, want->creationFlags);
	CHECK_INT(got->checkpointSize, want->checkpointSize);
	CHECK_INT(got->retentionDuration, want->retentionDuration);
	CHECK_INT(got->maxSections, want->maxSections);
	CHECK_INT(got->maxSectionSize, want->maxSectionSize);
	CHECK_INT(got->maxSectionIdSize, want->maxSectionIdSize);
}

/* Opening without CREATE says whether the name exists. */
static SaAisErrorT probe(const SaNameT *name)
{
	SaCkptCheckpointHandleT ck = 0;
	SaAisErrorT rc = saCkptCheckpointOpen(lib, name, NULL,
					      SA_CKPT_CHECKPOINT_READ,
					      CK_TIMEOUT, &ck);

	if (rc == SA_AIS_OK)
		saCkptCheckpointClose(ck);
	return rc;
}

/* An open that must fail; a handle it returns anyway is closed, so later
   checks see the checkpoint as they expect. */
static void open_fails(int line, const char *expr, const SaNameT *name,
		       const SaCkptCheckpointCreationAttributesT *attrs,
		       SaCkptCheckpointOpenFlagsT flags, SaAisErrorT expected)
{
	SaCkptCheckpointHandleT ck = 0;
	SaAisErrorT rc = saCkptCheckpointOpen(lib, name, attrs, flags,
					      CK_TIMEOUT, &ck);

	if (!ck_eq(__FILE__, line, expr, rc, expected) && rc == SA_AIS_OK)
		saCkptCheckpointClose(ck);
}

#define OPEN_FAILS(name, attrs, flags, expected) \
	open_fails(__LINE__, "saCkptCheckpointOpen(lib, " #name ", " #attrs \
		   ", " #flags ", CK_TIMEOUT, &ck)", name, attrs, flags, \
		   expected)

static void open_and_attributes(const SaNameT *a, const SaNameT *b,
				const SaNameT *c)
{
	SaCkptCheckpointCreationAttributesT attrs = base_attrs(), other;
	SaCkptCheckpointHandleT ck1 = 0, ck2 = 0, ck3 = 0;

	/* Absent, no CREATE. */
	CHECK_EQ(saCkptCheckpointOpen(lib, a, NULL, RW, CK_TIMEOUT, &ck1),
		 SA_AIS_ERR_NOT_EXIST);

	/* Create, then reopen without CREATE and with NULL attributes. */
	if (!CHECK_EQ(saCkptCheckpointOpen(lib, a, &attrs, CRW, CK_TIMEOUT,
					   &ck1), SA_AIS_OK))
		return;
	CHECK_EQ(saCkptCheckpointOpen(lib, a, NULL, SA_CKPT_CHECKPOINT_READ,
				      CK_TIMEOUT, &ck2), SA_AIS_OK);
	CHECK(ck2 != ck1);
	/* CREATE with the same attributes opens the existing checkpoint. */
	CHECK_EQ(saCkptCheckpointOpen(lib, a, &attrs, CRW, CK_TIMEOUT, &ck3),
		 SA_AIS_OK);
	CHECK(ck3 != ck1 && ck3 != ck2);
	CHECK_EQ(saCkptCheckpointClose(ck3), SA_AIS_OK);

	/* CREATE with different attributes: EXIST. */
	other = attrs;
	other.maxSections = 5;
	OPEN_FAILS(a, &other, CRW, SA_AIS_ERR_EXIST);
	other = attrs;
	other.maxSectionSize = 8192;
	OPEN_FAILS(a, &other, CRW, SA_AIS_ERR_EXIST);
	other = attrs;
	other.checkpointSize = 4096;
	OPEN_FAILS(a, &other, CRW, SA_AIS_ERR_EXIST);
	other = attrs;
	other.maxSectionIdSize = 16;
	OPEN_FAILS(a, &other, CRW, SA_AIS_ERR_EXIST);
	other = attrs;
	other.creationFlags = SA_CKPT_WR_ACTIVE_REPLICA;
	OPEN_FAILS(a, &other, CRW, SA_AIS_ERR_EXIST);
	other = attrs;
	other.retentionDuration = SA_TIME_ONE_HOUR;
	/* OpenSAF returns OK when only retentionDuration differs. */
	OPEN_FAILS(a, &other, CRW, SA_AIS_ERR_EXIST);

	/* CREATE needs attributes; no CREATE forbids them. */
	OPEN_FAILS(a, NULL, CRW, SA_AIS_ERR_INVALID_PARAM);
	OPEN_FAILS(b, NULL, CRW, SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(probe(b), SA_AIS_ERR_NOT_EXIST);
	OPEN_FAILS(a, &attrs, RW, SA_AIS_ERR_INVALID_PARAM);
	OPEN_FAILS(a, &attrs, SA_CKPT_CHECKPOINT_READ,
		   SA_AIS_ERR_INVALID_PARAM);

	/* No open flags at all. */
	OPEN_FAILS(a, NULL, 0, SA_AIS_ERR_BAD_FLAGS);

	/* checkpointSize > maxSections * maxSectionSize; nothing created. */
	other = attrs;
	other.checkpointSize = 4 * 4096 + 1;
	OPEN_FAILS(c, &other, CRW, SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(probe(c), SA_AIS_ERR_NOT_EXIST);
	/* checkpointSize == maxSections * maxSectionSize is allowed. */
	other.checkpointSize = 4 * 4096;
	if (CHECK_EQ(saCkptCheckpointOpen(lib, c, &other, CRW, CK_TIMEOUT,
					  &ck3), SA_AIS_OK)) {
		CHECK_EQ(saCkptCheckpointClose(ck3), SA_AIS_OK);
		CHECK_EQ(saCkptCheckpointUnlink(lib, c), SA_AIS_OK);
	}

	/* NULL name, NULL out handle. */
	OPEN_FAILS(NULL, &attrs, CRW, SA_AIS_ERR_INVALID_PARAM);
	OPEN_FAILS(NULL, NULL, SA_CKPT_CHECKPOINT_READ,
		   SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(saCkptCheckpointOpen(lib, a, NULL, SA_CKPT_CHECKPOINT_READ,
				      CK_TIMEOUT, NULL),
		 SA_AIS_ERR_INVALID_PARAM);

	CHECK_EQ(saCkptCheckpointClose(ck2), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointClose(ck1), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointUnlink(lib, a), SA_AIS_OK);
}

static void status(const SaNameT *a)
{
	SaCkptCheckpointCreationAttributesT attrs = base_attrs();
	SaCkptCheckpointHandleT ck = 0, ro = 0;
	SaCkptCheckpointDescriptorT st = { 0 };
	SaCkptSectionIdT s1 = sid("s1"), s2 = sid("s2");
	char data[100];

	memset(data, 'x', sizeof data);
	if (!CHECK_EQ(saCkptCheckpointOpen(lib, a, &attrs, CRW, CK_TIMEOUT,
					   &ck), SA_AIS_OK))
		return;
	CHECK_EQ(saCkptCheckpointOpen(lib, a, NULL, SA_CKPT_CHECKPOINT_READ,
				      CK_TIMEOUT, &ro), SA_AIS_OK);

	memset(&st, 0xa5, sizeof st);
	if (CHECK_EQ(saCkptCheckpointStatusGet(ck, &st), SA_AIS_OK)) {
		check_attrs(&st.checkpointCreationAttributes, &attrs);
		CHECK_INT(st.numberOfSections, 0);
		CHECK_INT(st.memoryUsed, 0);
	}
	CHECK_EQ(saCkptCheckpointStatusGet(ck, NULL),
		 SA_AIS_ERR_INVALID_PARAM);

	/* memoryUsed is the sum of the section sizes. */
	CHECK_EQ(section_create(ck, "s1", data, 10), SA_AIS_OK);
	CHECK_EQ(section_create(ck, "s2", data, 100), SA_AIS_OK);
	if (CHECK_EQ(saCkptCheckpointStatusGet(ck, &st), SA_AIS_OK)) {
		CHECK_INT(st.numberOfSections, 2);
		CHECK_INT(st.memoryUsed, 110);
	}
	/* The same through a read-only handle. */
	memset(&st, 0xa5, sizeof st);
	if (CHECK_EQ(saCkptCheckpointStatusGet(ro, &st), SA_AIS_OK)) {
		check_attrs(&st.checkpointCreationAttributes, &attrs);
		CHECK_INT(st.numberOfSections, 2);
		CHECK_INT(st.memoryUsed, 110);
	}
	CHECK_EQ(saCkptSectionOverwrite(ck, &s2, data, 50), SA_AIS_OK);
	if (CHECK_EQ(saCkptCheckpointStatusGet(ck, &st), SA_AIS_OK)) {
		CHECK_INT(st.numberOfSections, 2);
		CHECK_INT(st.memoryUsed, 60);
	}
	CHECK_EQ(saCkptSectionDelete(ck, &s1), SA_AIS_OK);
	if (CHECK_EQ(saCkptCheckpointStatusGet(ck, &st), SA_AIS_OK)) {
		CHECK_INT(st.numberOfSections, 1);
		CHECK_INT(st.memoryUsed, 50);
	}

	/* Close: the handle is gone, the checkpoint stays for the other. */
	CHECK_EQ(saCkptCheckpointClose(ro), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointStatusGet(ro, &st), SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(saCkptCheckpointClose(ro), SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(saCkptCheckpointStatusGet(ck, &st), SA_AIS_OK);

	CHECK_EQ(saCkptCheckpointClose(ck), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointUnlink(lib, a), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointUnlink(lib, a), SA_AIS_ERR_NOT_EXIST);
	CHECK_EQ(probe(a), SA_AIS_ERR_NOT_EXIST);
}

static void unlink_semantics(const SaNameT *a, const SaNameT *b)
{
	SaCkptCheckpointCreationAttributesT attrs = base_attrs();
	SaCkptCheckpointHandleT ck = 0, fresh = 0;
	SaCkptCheckpointDescriptorT st = { 0 };
	SaCkptSectionIdT s1 = sid("s1");
	SaCkptIOVectorElementT e;
	char buf[16];

	CHECK_EQ(saCkptCheckpointUnlink(lib, NULL), SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(saCkptCheckpointUnlink(lib, b), SA_AIS_ERR_NOT_EXIST);

	/* Nobody has it open: unlink deletes it at once. */
	if (CHECK_EQ(saCkptCheckpointOpen(lib, b, &attrs, CRW, CK_TIMEOUT,
					  &ck), SA_AIS_OK)) {
		CHECK_EQ(saCkptCheckpointRetentionDurationSet(
				 ck, SA_TIME_ONE_HOUR), SA_AIS_OK);
		/* The status reports the retention as last set. */
		if (CHECK_EQ(saCkptCheckpointStatusGet(ck, &st), SA_AIS_OK))
			CHECK_INT(st.checkpointCreationAttributes.retentionDuration,
				  SA_TIME_ONE_HOUR);
		CHECK_EQ(saCkptCheckpointClose(ck), SA_AIS_OK);
		CHECK_EQ(saCkptCheckpointUnlink(lib, b), SA_AIS_OK);
		CHECK_EQ(probe(b), SA_AIS_ERR_NOT_EXIST);
	}

	/* Unlinked while open: the opener keeps working. */
	if (!CHECK_EQ(saCkptCheckpointOpen(lib, a, &attrs, CRW, CK_TIMEOUT,
					   &ck), SA_AIS_OK))
		return;
	CHECK_EQ(section_create(ck, "s1", "before", 6), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointUnlink(lib, a), SA_AIS_OK);
	CHECK_EQ(probe(a), SA_AIS_ERR_NOT_EXIST);
	CHECK_EQ(saCkptCheckpointUnlink(lib, a), SA_AIS_ERR_NOT_EXIST);

	CHECK_EQ(saCkptSectionOverwrite(ck, &s1, "after!", 6), SA_AIS_OK);
	memset(buf, 0, sizeof buf);
	e = iov("s1", buf, sizeof buf, 0);
	if (CHECK_EQ(saCkptCheckpointRead(ck, &e, 1, NULL), SA_AIS_OK)) {
		CHECK_INT(e.readSize, 6);
		CHECK(memcmp(buf, "after!", 6) == 0);
	}
	CHECK_EQ(section_create(ck, "s2", "x", 1), SA_AIS_OK);
	if (CHECK_EQ(saCkptCheckpointStatusGet(ck, &st), SA_AIS_OK))
		CHECK_INT(st.numberOfSections, 2);
	/* The retention of an unlinked checkpoint cannot change. */
	CHECK_EQ(saCkptCheckpointRetentionDurationSet(ck, SA_TIME_ONE_HOUR),
		 SA_AIS_ERR_BAD_OPERATION);

	/* The name is free again: a new, empty instance while the old one
	   is still open. */
	if (CHECK_EQ(saCkptCheckpointOpen(lib, a, &attrs, CRW, CK_TIMEOUT,
					  &fresh), SA_AIS_OK)) {
		if (CHECK_EQ(saCkptCheckpointStatusGet(fresh, &st), SA_AIS_OK))
			CHECK_INT(st.numberOfSections, 0);
		if (CHECK_EQ(saCkptCheckpointStatusGet(ck, &st), SA_AIS_OK))
			CHECK_INT(st.numberOfSections, 2);
		CHECK_EQ(saCkptCheckpointClose(fresh), SA_AIS_OK);
		CHECK_EQ(saCkptCheckpointUnlink(lib, a), SA_AIS_OK);
	}

	/* The last close deletes the unlinked instance. */
	CHECK_EQ(saCkptCheckpointClose(ck), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointStatusGet(ck, &st), SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(probe(a), SA_AIS_ERR_NOT_EXIST);
}

/* After the last close a checkpoint lives for its retention duration. */
static void retention(const SaNameT *a, const SaNameT *b)
{
	SaCkptCheckpointCreationAttributesT attrs = base_attrs();
	SaCkptCheckpointHandleT ck = 0;
	SaCkptCheckpointDescriptorT st = { 0 };
	SaAisErrorT rc = SA_AIS_OK;
	int i;

	/* Retained (one hour): reopening finds it with its data. */
	attrs.retentionDuration = SA_TIME_ONE_HOUR;
	if (CHECK_EQ(saCkptCheckpointOpen(lib, a, &attrs, CRW, CK_TIMEOUT,
					  &ck), SA_AIS_OK)) {
		CHECK_EQ(section_create(ck, "kept", "data", 4), SA_AIS_OK);
		CHECK_EQ(saCkptCheckpointClose(ck), SA_AIS_OK);
		if (CHECK_EQ(saCkptCheckpointOpen(lib, a, NULL, RW, CK_TIMEOUT,
						  &ck), SA_AIS_OK)) {
			if (CHECK_EQ(saCkptCheckpointStatusGet(ck, &st),
				     SA_AIS_OK)) {
				CHECK_INT(st.numberOfSections, 1);
				CHECK_INT(st.memoryUsed, 4);
			}
			CHECK_EQ(saCkptCheckpointClose(ck), SA_AIS_OK);
		}
		CHECK_EQ(saCkptCheckpointUnlink(lib, a), SA_AIS_OK);
	}

	/* Retention shortened by RetentionDurationSet to 100 ms: gone after
	   the last close (allow the service a few seconds). */
	if (CHECK_EQ(saCkptCheckpointOpen(lib, b, &attrs, CRW, CK_TIMEOUT,
					  &ck), SA_AIS_OK)) {
		CHECK_EQ(saCkptCheckpointRetentionDurationSet(
				 ck, 100 * SA_TIME_ONE_MILLISECOND), SA_AIS_OK);
		CHECK_EQ(saCkptCheckpointClose(ck), SA_AIS_OK);
		/* Each probe that finds it reopens it and restarts the
		   retention, so probes are further apart than 100 ms. */
		for (i = 0; i < 20; i++) {
			ck_sleep_ms(250);
			rc = probe(b);
			if (rc != SA_AIS_OK)
				break;
		}
		CHECK_EQ(rc, SA_AIS_ERR_NOT_EXIST);
		CHECK_EQ(saCkptCheckpointUnlink(lib, b), SA_AIS_ERR_NOT_EXIST);
	}
}

/* A closed checkpoint handle is BAD_HANDLE in every call that takes one;
   all other arguments are valid. */
static void closed_handle(const SaNameT *a)
{
	SaCkptCheckpointCreationAttributesT attrs = base_attrs();
	SaCkptCheckpointHandleT ck = 0, dead = 0;
	SaCkptCheckpointDescriptorT st = { 0 };
	SaCkptSectionIdT s1 = sid("s1"), s9 = sid("s9");
	SaCkptSectionIdT gen = SA_CKPT_GENERATED_SECTION_ID;
	SaCkptSectionCreationAttributesT sa;
	SaCkptSectionIterationHandleT it = 0;
	SaCkptIOVectorElementT e;
	SaUint32T idx = 99;
	char buf[8] = "abc";

	if (!CHECK_EQ(saCkptCheckpointOpen(lib, a, &attrs, CRW, CK_TIMEOUT,
					   &ck), SA_AIS_OK))
		return;
	CHECK_EQ(section_create(ck, "s1", "abc", 3), SA_AIS_OK);
	if (!CHECK_EQ(saCkptCheckpointOpen(lib, a, NULL, RW, CK_TIMEOUT,
					   &dead), SA_AIS_OK))
		goto out;
	CHECK_EQ(saCkptCheckpointClose(dead), SA_AIS_OK);

	CHECK_EQ(saCkptCheckpointClose(dead), SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(saCkptCheckpointRetentionDurationSet(dead, SA_TIME_ONE_SECOND),
		 SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(saCkptActiveReplicaSet(dead), SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(saCkptCheckpointStatusGet(dead, &st), SA_AIS_ERR_BAD_HANDLE);
	sa.sectionId = &s9;
	sa.expirationTime = SA_TIME_END;
	CHECK_EQ(saCkptSectionCreate(dead, &sa, "x", 1), SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(saCkptSectionDelete(dead, &s1), SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(saCkptSectionExpirationTimeSet(dead, &s1, SA_TIME_END),
		 SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(saCkptSectionIterationInitialize(dead, SA_CKPT_SECTIONS_ANY,
						  0, &it),
		 SA_AIS_ERR_BAD_HANDLE);
	e = iov("s1", buf, 3, 0);
	CHECK_EQ(saCkptCheckpointWrite(dead, &e, 1, &idx),
		 SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(saCkptSectionOverwrite(dead, &s1, "xyz", 3),
		 SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(saCkptCheckpointRead(dead, &e, 1, &idx),
		 SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(saCkptCheckpointSynchronize(dead, CK_TIMEOUT),
		 SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(saCkptCheckpointSynchronizeAsync(dead, 1),
		 SA_AIS_ERR_BAD_HANDLE);

	/* The two free calls, with memory the live handle got. */
	sa.sectionId = &gen;
	if (CHECK_EQ(saCkptSectionCreate(ck, &sa, "g", 1), SA_AIS_OK) &&
	    CHECK(gen.id != NULL)) {
		CHECK_EQ(saCkptSectionIdFree(dead, gen.id),
			 SA_AIS_ERR_BAD_HANDLE);
		CHECK_EQ(saCkptSectionIdFree(ck, gen.id), SA_AIS_OK);
	}
	e = iov("s1", NULL, 0, 0);
	if (CHECK_EQ(saCkptCheckpointRead(ck, &e, 1, NULL), SA_AIS_OK) &&
	    CHECK(e.dataBuffer != NULL)) {
		CHECK_INT(e.readSize, 3);
		CHECK(memcmp(e.dataBuffer, "abc", 3) == 0);
		CHECK_EQ(saCkptIOVectorElementDataFree(dead, e.dataBuffer),
			 SA_AIS_ERR_BAD_HANDLE);
		CHECK_EQ(saCkptIOVectorElementDataFree(ck, e.dataBuffer),
			 SA_AIS_OK);
	}

	/* Closing one handle left the other working. */
	CHECK_EQ(saCkptCheckpointStatusGet(ck, &st), SA_AIS_OK);
out:
	CHECK_EQ(saCkptCheckpointClose(ck), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointUnlink(lib, a), SA_AIS_OK);
}

/* Library handles, garbage, and handles of a finalized library handle
   where a checkpoint handle is expected; a checkpoint handle where a
   library handle is expected. */
static void wrong_handles(const SaNameT *a, const SaNameT *b)
{
	SaCkptCheckpointCreationAttributesT attrs = base_attrs();
	SaCkptCheckpointHandleT ck = 0, orphan = 0, unused = 0;
	SaCkptCheckpointHandleT bad[4];
	SaCkptCheckpointDescriptorT st = { 0 };
	SaCkptSectionIdT s1 = sid("s1");
	SaCkptIOVectorElementT e;
	SaCkptHandleT other = 0;
	SaVersionT v = CK_VERSION_INIT;
	char buf[8] = "abc";
	size_t i;

	if (!CHECK_EQ(saCkptCheckpointOpen(lib, a, &attrs, CRW, CK_TIMEOUT,
					   &ck), SA_AIS_OK))
		return;
	CHECK_EQ(section_create(ck, "s1", "abc", 3), SA_AIS_OK);
	/* Library and checkpoint handles are told apart by value. */
	CHECK(ck != lib);

	bad[0] = lib;
	bad[1] = 0;
	bad[2] = 12345;
	bad[3] = ~0ULL;
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (bad[i] == ck)
			continue;
		printf("checkpoint handle %llu\n", (unsigned long long)bad[i]);
		CHECK_EQ(saCkptCheckpointStatusGet(bad[i], &st),
			 SA_AIS_ERR_BAD_HANDLE);
		e = iov("s1", buf, 3, 0);
		CHECK_EQ(saCkptCheckpointRead(bad[i], &e, 1, NULL),
			 SA_AIS_ERR_BAD_HANDLE);
		CHECK_EQ(saCkptCheckpointWrite(bad[i], &e, 1, NULL),
			 SA_AIS_ERR_BAD_HANDLE);
		CHECK_EQ(saCkptSectionOverwrite(bad[i], &s1, "xyz", 3),
			 SA_AIS_ERR_BAD_HANDLE);
		CHECK_EQ(saCkptCheckpointRetentionDurationSet(
				 bad[i], SA_TIME_ONE_SECOND),
			 SA_AIS_ERR_BAD_HANDLE);
		CHECK_EQ(saCkptCheckpointClose(bad[i]), SA_AIS_ERR_BAD_HANDLE);
	}
	/* The library handle still works. */
	CHECK_EQ(saCkptDispatch(lib, SA_DISPATCH_ALL), SA_AIS_OK);

	/* A checkpoint handle is not a library handle. */
	if (ck != lib) {
		CHECK_EQ(saCkptCheckpointOpen(ck, a, NULL, RW, CK_TIMEOUT,
					      &unused), SA_AIS_ERR_BAD_HANDLE);
		CHECK_EQ(saCkptCheckpointUnlink(ck, b), SA_AIS_ERR_BAD_HANDLE);
		CHECK_EQ(saCkptDispatch(ck, SA_DISPATCH_ALL),
			 SA_AIS_ERR_BAD_HANDLE);
	}
	CHECK_EQ(saCkptCheckpointStatusGet(ck, &st), SA_AIS_OK);

	/* Finalize closes the checkpoints opened through the handle. */
	if (CHECK_EQ(saCkptInitialize(&other, NULL, &v), SA_AIS_OK)) {
		CHECK_EQ(saCkptCheckpointOpen(other, a, NULL, RW, CK_TIMEOUT,
					      &orphan), SA_AIS_OK);
		CHECK_EQ(saCkptCheckpointStatusGet(orphan, &st), SA_AIS_OK);
		CHECK_EQ(saCkptFinalize(other), SA_AIS_OK);
		CHECK_EQ(saCkptCheckpointStatusGet(orphan, &st),
			 SA_AIS_ERR_BAD_HANDLE);
		CHECK_EQ(saCkptSectionOverwrite(orphan, &s1, "xyz", 3),
			 SA_AIS_ERR_BAD_HANDLE);
		CHECK_EQ(saCkptCheckpointClose(orphan), SA_AIS_ERR_BAD_HANDLE);
	}
	/* ... and only those. */
	if (CHECK_EQ(saCkptCheckpointStatusGet(ck, &st), SA_AIS_OK))
		CHECK_INT(st.numberOfSections, 1);

	CHECK_EQ(saCkptCheckpointClose(ck), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointUnlink(lib, a), SA_AIS_OK);
}

static void open_cb(SaInvocationT inv, SaCkptCheckpointHandleT ck,
		    SaAisErrorT err)
{
	(void)inv;
	(void)ck;
	(void)err;
}

static void sync_cb(SaInvocationT inv, SaAisErrorT err)
{
	(void)inv;
	(void)err;
}

int main(void)
{
	/* With both callbacks, so no call here can be refused with ERR_INIT. */
	SaCkptCallbacksT cbs = { open_cb, sync_cb };
	SaVersionT v = CK_VERSION_INIT;
	SaNameT a, b, c;

	CHECK_START("open");
	ck_name(&a, "open", "a");
	ck_name(&b, "open", "b");
	ck_name(&c, "open", "c");
	if (!CHECK_EQ(saCkptInitialize(&lib, &cbs, &v), SA_AIS_OK))
		return CHECK_DONE();

	open_and_attributes(&a, &b, &c);
	status(&a);
	unlink_semantics(&a, &b);
	retention(&a, &b);
	closed_handle(&a);
	wrong_handles(&a, &b);

	/* Nothing left behind (NOT_EXIST is the expected answer here). */
	saCkptCheckpointUnlink(lib, &a);
	saCkptCheckpointUnlink(lib, &b);
	saCkptCheckpointUnlink(lib, &c);
	CHECK_EQ(saCkptFinalize(lib), SA_AIS_OK);
	return CHECK_DONE();
}
