/*
 * offsets_isolation.c: what a write or read past a section's end does, which
 * errors leave erroneousVectorIndex alone, and reads of several sections
 * racing vector writes.
 *
 * - A write that starts past the end grows the section over zero bytes (the
 *   spec: "some sections might grow"; OpenSAF and openais grow it over a
 *   hole), even where an older version left other bytes.
 * - A read that starts past the end is INVALID_PARAM with that element's
 *   index (as OpenSAF and openais); one at the end reads 0 bytes.
 * - ACCESS is the call's error, not an element's: the index is unchanged
 *   (spec 3.7.1: it names "the first iovector element that makes the
 *   invocation fail").
 * - A thread writes two sections in one call, again and again; a read of
 *   both in one call always finds them equal (spec 3.7.1: a vector write is
 *   atomic on the replica).
 */
#include "check.h"

#include <pthread.h>
#include <saCkpt.h>

#define RW (SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE)
#define CRW (SA_CKPT_CHECKPOINT_CREATE | RW)
#define WRITES 20000u

static SaCkptSectionIdT id_s = {1, (SaUint8T *)"s"};
static SaCkptSectionIdT id_a = {1, (SaUint8T *)"a"};
static SaCkptSectionIdT id_b = {1, (SaUint8T *)"b"};

static void element(SaCkptIOVectorElementT *e, SaCkptSectionIdT id, void *buf,
		    SaSizeT size, SaOffsetT offset)
{
	memset(e, 0, sizeof *e);
	e->sectionId = id;
	e->dataBuffer = buf;
	e->dataSize = size;
	e->dataOffset = offset;
}

static void *writer(void *arg)
{
	SaCkptCheckpointHandleT ck = *(SaCkptCheckpointHandleT *)arg;
	SaCkptIOVectorElementT two[2];
	SaUint32T n;
	for (n = 1; n <= WRITES; n++) {
		element(&two[0], id_a, &n, sizeof n, 0);
		element(&two[1], id_b, &n, sizeof n, 0);
		if (saCkptCheckpointWrite(ck, two, 2, NULL) != SA_AIS_OK) {
			CHECK(!"a vector write failed");
			break;
		}
	}
	return NULL;
}

int main(void)
{
	SaVersionT v = CK_VERSION_INIT;
	SaCkptHandleT lib;
	SaCkptCheckpointHandleT ck, ro, wo;
	SaCkptCheckpointCreationAttributesT attrs = {
		SA_CKPT_WR_ALL_REPLICAS, 4 * 64, 0, 4, 64, 8};
	SaCkptSectionCreationAttributesT cs = {&id_s, SA_TIME_END};
	SaCkptSectionCreationAttributesT ca = {&id_a, SA_TIME_END};
	SaCkptSectionCreationAttributesT cb = {&id_b, SA_TIME_END};
	SaCkptIOVectorElementT e, two[2];
	SaNameT name;
	SaUint32T idx, zero = 0;
	char buf[64], q[16];
	pthread_t t;

	CHECK_START("offsets_isolation");
	ck_name(&name, "offsets_isolation", "main");
	CHECK_EQ(saCkptInitialize(&lib, NULL, &v), SA_AIS_OK);
	if (!CHECK_EQ(saCkptCheckpointOpen(lib, &name, &attrs, CRW, CK_TIMEOUT, &ck), SA_AIS_OK))
		return CHECK_DONE();
	CHECK_EQ(saCkptSectionCreate(ck, &cs, "abc", 3), SA_AIS_OK);
	/* Stale bytes in the spare buffer, where the hole will be. */
	memset(q, 'Q', sizeof q);
	CHECK_EQ(saCkptSectionOverwrite(ck, &id_s, q, sizeof q), SA_AIS_OK);
	CHECK_EQ(saCkptSectionOverwrite(ck, &id_s, "abc", 3), SA_AIS_OK);

	/* A write past the end: the hole reads as zeros. */
	element(&e, id_s, "x", 1, 6);
	idx = 77;
	CHECK_EQ(saCkptCheckpointWrite(ck, &e, 1, &idx), SA_AIS_OK);
	CHECK_INT(idx, 77);
	element(&e, id_s, NULL, 0, 0);
	if (CHECK_EQ(saCkptCheckpointRead(ck, &e, 1, NULL), SA_AIS_OK)) {
		CHECK_INT(e.readSize, 7);
		CHECK(memcmp(e.dataBuffer, "abc\0\0\0x", 7) == 0);
		CHECK_EQ(saCkptIOVectorElementDataFree(ck, e.dataBuffer), SA_AIS_OK);
	}
	/* Past maxSectionSize it is still INVALID_PARAM, element 0. */
	element(&e, id_s, "x", 1, 64);
	idx = 77;
	CHECK_EQ(saCkptCheckpointWrite(ck, &e, 1, &idx), SA_AIS_ERR_INVALID_PARAM);
	CHECK_INT(idx, 0);

	/* Reads: at the end 0 bytes; past it INVALID_PARAM at its index. */
	element(&e, id_s, buf, sizeof buf, 7);
	if (CHECK_EQ(saCkptCheckpointRead(ck, &e, 1, &idx), SA_AIS_OK))
		CHECK_INT(e.readSize, 0);
	element(&two[0], id_s, buf, sizeof buf, 0);
	element(&two[1], id_s, buf, sizeof buf, 8);
	idx = 77;
	CHECK_EQ(saCkptCheckpointRead(ck, two, 2, &idx), SA_AIS_ERR_INVALID_PARAM);
	CHECK_INT(idx, 1);
	element(&two[1], id_s, NULL, 0, 8);
	idx = 77;
	CHECK_EQ(saCkptCheckpointRead(ck, two, 2, &idx), SA_AIS_ERR_INVALID_PARAM);
	CHECK_INT(idx, 1);
	CHECK(two[1].dataBuffer == NULL);

	/* ACCESS leaves the index alone, for writes and reads. */
	CHECK_EQ(saCkptCheckpointOpen(lib, &name, NULL, SA_CKPT_CHECKPOINT_READ, CK_TIMEOUT, &ro),
		 SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointOpen(lib, &name, NULL, SA_CKPT_CHECKPOINT_WRITE, CK_TIMEOUT, &wo),
		 SA_AIS_OK);
	element(&e, id_s, "y", 1, 0);
	idx = 77;
	CHECK_EQ(saCkptCheckpointWrite(ro, &e, 1, &idx), SA_AIS_ERR_ACCESS);
	CHECK_INT(idx, 77);
	element(&e, id_s, buf, sizeof buf, 0);
	idx = 77;
	CHECK_EQ(saCkptCheckpointRead(wo, &e, 1, &idx), SA_AIS_ERR_ACCESS);
	CHECK_INT(idx, 77);

	/* Reads of both sections while a thread writes both in each call. */
	CHECK_EQ(saCkptSectionCreate(ck, &ca, &zero, sizeof zero), SA_AIS_OK);
	CHECK_EQ(saCkptSectionCreate(ck, &cb, &zero, sizeof zero), SA_AIS_OK);
	if (CHECK_INT(pthread_create(&t, NULL, writer, &ck), 0)) {
		SaUint32T a = 0, b = 0, reads = 0, mixed = 0;
		while (a < WRITES) {
			/* b first: the order opposite the writer's. */
			element(&two[0], id_b, &b, sizeof b, 0);
			element(&two[1], id_a, &a, sizeof a, 0);
			if (!CHECK_EQ(saCkptCheckpointRead(ro, two, 2, NULL), SA_AIS_OK))
				break;
			reads++;
			if (a != b && mixed++ == 0)
				printf("read %u: a %u, b %u\n", reads, a, b);
		}
		CHECK_INT(mixed, 0);
		pthread_join(t, NULL);
	}

	CHECK_EQ(saCkptCheckpointUnlink(lib, &name), SA_AIS_OK);
	CHECK_EQ(saCkptFinalize(lib), SA_AIS_OK);
	return CHECK_DONE();
}
