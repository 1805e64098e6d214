/*
 * io.c: data access. saCkptCheckpointWrite, saCkptSectionOverwrite,
 * saCkptCheckpointRead (caller and library buffers,
 * saCkptIOVectorElementDataFree), erroneousVectorIndex, access modes,
 * saCkptActiveReplicaSet and saCkptCheckpointSynchronize.
 */
#include "check.h"

#include <saCkpt.h>

#define RW (SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE)
#define CRW (SA_CKPT_CHECKPOINT_CREATE | RW)

#define MAX_SIZE 64		/* maxSectionSize */

static SaCkptHandleT lib;

static SaCkptSectionIdT sid(const char *s)
{
	SaCkptSectionIdT id;

	id.idLen = (SaUint16T)strlen(s);
	id.id = (SaUint8T *)(char *)s;
	return id;
}

static SaCkptIOVectorElementT iov(const char *s, const void *buf,
				  SaSizeT size, SaOffsetT off)
{
	SaCkptIOVectorElementT e;

	memset(&e, 0, sizeof e);
	e.sectionId = sid(s);
	e.dataBuffer = (void *)buf;	/* write vectors only read it */
	e.dataSize = size;
	e.dataOffset = off;
	return e;
}

static SaAisErrorT create(SaCkptCheckpointHandleT ck, const char *s,
			  const void *data, SaSizeT size)
{
	SaCkptSectionIdT id = sid(s);
	SaCkptSectionCreationAttributesT sa;

	sa.sectionId = &id;
	sa.expirationTime = SA_TIME_END;
	return saCkptSectionCreate(ck, &sa, data, size);
}

static SaCkptCheckpointCreationAttributesT attrs_for(
	SaCkptCheckpointCreationFlagsT flags)
{
	SaCkptCheckpointCreationAttributesT a;

	memset(&a, 0, sizeof a);
	a.creationFlags = flags;
	a.checkpointSize = 4 * MAX_SIZE;
	a.retentionDuration = SA_TIME_ONE_SECOND;
	a.maxSections = 4;
	a.maxSectionSize = MAX_SIZE;
	a.maxSectionIdSize = 16;
	return a;
}

/* Section s holds exactly the len bytes of want. */
static void expect_section(int line, SaCkptCheckpointHandleT ck,
			   const char *s, const char *want, SaSizeT len)
{
	char buf[MAX_SIZE + 1];
	SaCkptIOVectorElementT e;
	int ok = 0;

	memset(buf, 0, sizeof buf);
	e = iov(s, buf, MAX_SIZE, 0);
	if (CHECK_EQ(saCkptCheckpointRead(ck, &e, 1, NULL), SA_AIS_OK))
		ok = CHECK_INT(e.readSize, len) &&
		     CHECK(memcmp(buf, want, len) == 0);
	if (!ok)
		printf("    (section %s, checked at line %d)\n", s, line);
}

#define EXPECT_SECTION(ck, s, want, len) \
	expect_section(__LINE__, ck, s, want, len)

static void write_and_read(const SaNameT *name)
{
	SaCkptCheckpointCreationAttributesT attrs =
		attrs_for(SA_CKPT_WR_ALL_REPLICAS);
	SaCkptCheckpointHandleT rw = 0, ro = 0, wo = 0;
	SaCkptCheckpointDescriptorT st = { 0 };
	SaCkptSectionIdT b = sid("b"), d = sid("d"), zz = sid("zz");
	SaCkptIOVectorElementT v[3];
	SaUint32T idx;
	char buf1[MAX_SIZE + 1], buf2[MAX_SIZE + 1], big[MAX_SIZE + 1];

	memset(big, 'B', sizeof big);
	if (!CHECK_EQ(saCkptCheckpointOpen(lib, name, &attrs, CRW, CK_TIMEOUT,
					   &rw), SA_AIS_OK))
		return;
	CHECK_EQ(saCkptCheckpointOpen(lib, name, NULL, SA_CKPT_CHECKPOINT_READ,
				      CK_TIMEOUT, &ro), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointOpen(lib, name, NULL, SA_CKPT_CHECKPOINT_WRITE,
				      CK_TIMEOUT, &wo), SA_AIS_OK);
	CHECK_EQ(create(rw, "a", NULL, 0), SA_AIS_OK);
	CHECK_EQ(create(rw, "b", NULL, 0), SA_AIS_OK);
	CHECK_EQ(create(rw, "c", "12345", 5), SA_AIS_OK);
	CHECK_EQ(create(rw, "d", NULL, 0), SA_AIS_OK);

	/* One write of three elements, applied in order; the index is left
	   alone on success. */
	v[0] = iov("a", "hello", 5, 0);
	v[1] = iov("b", "world!!", 7, 0);
	v[2] = iov("a", " there", 6, 5);
	idx = 777;
	CHECK_EQ(saCkptCheckpointWrite(rw, v, 3, &idx), SA_AIS_OK);
	CHECK_INT(idx, 777);

	/* Read into caller buffers: readSize is what the section held. */
	memset(buf1, 0, sizeof buf1);
	memset(buf2, 0, sizeof buf2);
	v[0] = iov("a", buf1, MAX_SIZE, 0);
	v[1] = iov("b", buf2, MAX_SIZE, 0);
	v[0].readSize = v[1].readSize = 999;
	idx = 777;
	if (CHECK_EQ(saCkptCheckpointRead(ro, v, 2, &idx), SA_AIS_OK)) {
		CHECK_INT(v[0].readSize, 11);
		CHECK(memcmp(buf1, "hello there", 11) == 0);
		CHECK_INT(v[1].readSize, 7);
		CHECK(memcmp(buf2, "world!!", 7) == 0);
	}
	/* A smaller buffer; an offset; an offset near the end. */
	memset(buf1, 0, sizeof buf1);
	v[0] = iov("a", buf1, 5, 0);
	if (CHECK_EQ(saCkptCheckpointRead(rw, v, 1, NULL), SA_AIS_OK)) {
		CHECK_INT(v[0].readSize, 5);
		CHECK(memcmp(buf1, "hello", 5) == 0);
	}
	memset(buf1, 0, sizeof buf1);
	v[0] = iov("a", buf1, 5, 6);
	if (CHECK_EQ(saCkptCheckpointRead(rw, v, 1, NULL), SA_AIS_OK)) {
		CHECK_INT(v[0].readSize, 5);
		CHECK(memcmp(buf1, "there", 5) == 0);
	}
	memset(buf1, 0, sizeof buf1);
	v[0] = iov("a", buf1, 20, 8);
	if (CHECK_EQ(saCkptCheckpointRead(rw, v, 1, NULL), SA_AIS_OK)) {
		CHECK_INT(v[0].readSize, 3);
		CHECK(memcmp(buf1, "ere", 3) == 0);
	}

	/* dataBuffer NULL: the library allocates (dataSize is ignored). */
	v[0] = iov("a", NULL, 0, 0);
	v[1] = iov("b", buf2, MAX_SIZE, 0);
	v[2] = iov("c", NULL, 1, 0);
	if (CHECK_EQ(saCkptCheckpointRead(ro, v, 3, NULL), SA_AIS_OK) &&
	    CHECK(v[0].dataBuffer != NULL) && CHECK(v[2].dataBuffer != NULL)) {
		CHECK_INT(v[0].readSize, 11);
		CHECK(memcmp(v[0].dataBuffer, "hello there", 11) == 0);
		CHECK_INT(v[1].readSize, 7);
		CHECK(v[1].dataBuffer == buf2);
		CHECK_INT(v[2].readSize, 5);
		CHECK(memcmp(v[2].dataBuffer, "12345", 5) == 0);
		CHECK_EQ(saCkptIOVectorElementDataFree(ro, v[0].dataBuffer),
			 SA_AIS_OK);
		CHECK_EQ(saCkptIOVectorElementDataFree(ro, v[2].dataBuffer),
			 SA_AIS_OK);
	}

	/* Overwrite replaces data and size. */
	CHECK_EQ(saCkptSectionOverwrite(rw, &b, "xyz", 3), SA_AIS_OK);
	EXPECT_SECTION(ro, "b", "xyz", 3);
	CHECK_EQ(saCkptSectionOverwrite(rw, &b, "", 0), SA_AIS_OK);
	EXPECT_SECTION(ro, "b", "", 0);
	CHECK_EQ(saCkptSectionOverwrite(rw, &b, "xyz", 3), SA_AIS_OK);

	/* A write at the end grows the section; one inside does not. */
	v[0] = iov("c", "678", 3, 5);
	CHECK_EQ(saCkptCheckpointWrite(rw, v, 1, NULL), SA_AIS_OK);
	EXPECT_SECTION(ro, "c", "12345678", 8);
	v[0] = iov("c", "ab", 2, 2);
	CHECK_EQ(saCkptCheckpointWrite(rw, v, 1, NULL), SA_AIS_OK);
	EXPECT_SECTION(ro, "c", "12ab5678", 8);
	if (CHECK_EQ(saCkptCheckpointStatusGet(rw, &st), SA_AIS_OK))
		CHECK_INT(st.memoryUsed, 11 + 3 + 8 + 0);

	/* Up to maxSectionSize, and not one byte more (the strict profile
	   answers INVALID_PARAM; OpenSAF answers NO_RESOURCES for
	   dataOffset + dataSize > maxSectionSize). */
	CHECK_EQ(saCkptSectionOverwrite(rw, &d, big, MAX_SIZE - 4), SA_AIS_OK);
	v[0] = iov("d", "1234", 4, MAX_SIZE - 4);
	CHECK_EQ(saCkptCheckpointWrite(rw, v, 1, NULL), SA_AIS_OK);
	v[0] = iov("d", "12345", 5, MAX_SIZE - 4);
	CHECK_EQ(saCkptCheckpointWrite(rw, v, 1, NULL),
		 SA_AIS_ERR_INVALID_PARAM);
	v[0] = iov("d", "1", 1, MAX_SIZE);
	CHECK_EQ(saCkptCheckpointWrite(rw, v, 1, NULL),
		 SA_AIS_ERR_INVALID_PARAM);
	v[0] = iov("d", big, MAX_SIZE + 1, 0);
	CHECK_EQ(saCkptCheckpointWrite(rw, v, 1, NULL),
		 SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(saCkptSectionOverwrite(rw, &d, big, MAX_SIZE + 1),
		 SA_AIS_ERR_INVALID_PARAM);

	/* The first failing element is reported and nothing is written
	   (WR_ALL_REPLICAS writes are all or nothing). */
	v[0] = iov("a", "HELLO", 5, 0);
	v[1] = iov("b", "XYZ", 3, 0);
	v[2] = iov("d", "12345", 5, MAX_SIZE - 4);
	idx = 777;
	CHECK_EQ(saCkptCheckpointWrite(rw, v, 3, &idx),
		 SA_AIS_ERR_INVALID_PARAM);
	CHECK_INT(idx, 2);
	CHECK_EQ(saCkptCheckpointWrite(rw, v, 3, NULL),
		 SA_AIS_ERR_INVALID_PARAM);
	v[0] = iov("d", big, MAX_SIZE + 1, 0);
	v[1] = iov("a", "HELLO", 5, 0);
	idx = 777;
	CHECK_EQ(saCkptCheckpointWrite(rw, v, 2, &idx),
		 SA_AIS_ERR_INVALID_PARAM);
	CHECK_INT(idx, 0);
	EXPECT_SECTION(ro, "a", "hello there", 11);
	EXPECT_SECTION(ro, "b", "xyz", 3);

	/* A missing section. */
	v[0] = iov("a", "HELLO", 5, 0);
	v[1] = iov("zz", "x", 1, 0);
	idx = 777;
	CHECK_EQ(saCkptCheckpointWrite(rw, v, 2, &idx), SA_AIS_ERR_NOT_EXIST);
	CHECK_INT(idx, 1);
	EXPECT_SECTION(ro, "a", "hello there", 11);
	CHECK_EQ(saCkptSectionOverwrite(rw, &zz, "x", 1), SA_AIS_ERR_NOT_EXIST);
	v[0] = iov("a", buf1, MAX_SIZE, 0);
	v[1] = iov("zz", buf2, MAX_SIZE, 0);
	idx = 777;
	CHECK_EQ(saCkptCheckpointRead(ro, v, 2, &idx), SA_AIS_ERR_NOT_EXIST);
	CHECK_INT(idx, 1);

	/* Access modes. */
	v[0] = iov("a", "HELLO", 5, 0);
	CHECK_EQ(saCkptCheckpointWrite(ro, v, 1, NULL), SA_AIS_ERR_ACCESS);
	CHECK_EQ(saCkptSectionOverwrite(ro, &b, "x", 1), SA_AIS_ERR_ACCESS);
	v[0] = iov("a", buf1, MAX_SIZE, 0);
	CHECK_EQ(saCkptCheckpointRead(wo, v, 1, NULL), SA_AIS_ERR_ACCESS);
	EXPECT_SECTION(ro, "a", "hello there", 11);
	EXPECT_SECTION(ro, "b", "xyz", 3);
	v[0] = iov("a", "HELLO", 5, 0);
	CHECK_EQ(saCkptCheckpointWrite(wo, v, 1, NULL), SA_AIS_OK);
	EXPECT_SECTION(ro, "a", "HELLO there", 11);

	/* NULL pointers. */
	idx = 777;
	CHECK_EQ(saCkptCheckpointWrite(rw, NULL, 1, &idx),
		 SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(saCkptCheckpointRead(rw, NULL, 1, &idx),
		 SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(saCkptSectionOverwrite(rw, NULL, "x", 1),
		 SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(saCkptSectionOverwrite(rw, &b, NULL, 3),
		 SA_AIS_ERR_INVALID_PARAM);
	EXPECT_SECTION(ro, "b", "xyz", 3);

	/* A synchronous checkpoint has nothing to synchronize and no active
	   replica to choose. */
	CHECK_EQ(saCkptCheckpointSynchronize(rw, CK_TIMEOUT),
		 SA_AIS_ERR_BAD_OPERATION);
	CHECK_EQ(saCkptActiveReplicaSet(rw), SA_AIS_ERR_BAD_OPERATION);

	CHECK_EQ(saCkptCheckpointClose(wo), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointClose(ro), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointClose(rw), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointUnlink(lib, name), SA_AIS_OK);
}

/* A collocated WR_ACTIVE_REPLICA checkpoint has no active replica until
   saCkptActiveReplicaSet. */
static void active_replica(const SaNameT *name)
{
	SaCkptCheckpointCreationAttributesT attrs =
		attrs_for(SA_CKPT_WR_ACTIVE_REPLICA |
			  SA_CKPT_CHECKPOINT_COLLOCATED);
	SaCkptCheckpointHandleT rw = 0, ro = 0;
	SaCkptCheckpointDescriptorT st = { 0 };
	SaCkptIOVectorElementT v[1];

	if (!CHECK_EQ(saCkptCheckpointOpen(lib, name, &attrs, CRW, CK_TIMEOUT,
					   &rw), SA_AIS_OK))
		return;
	CHECK_EQ(saCkptCheckpointOpen(lib, name, NULL, SA_CKPT_CHECKPOINT_READ,
				      CK_TIMEOUT, &ro), SA_AIS_OK);

	/* No active replica yet. */
	CHECK_EQ(create(rw, "k", "v1", 2), SA_AIS_ERR_NOT_EXIST);
	CHECK_EQ(saCkptCheckpointStatusGet(rw, &st), SA_AIS_ERR_NOT_EXIST);
	CHECK_EQ(saCkptCheckpointSynchronize(rw, CK_TIMEOUT),
		 SA_AIS_ERR_NOT_EXIST);

	/* Only a handle opened for writing may make its replica active. */
	CHECK_EQ(saCkptActiveReplicaSet(ro), SA_AIS_ERR_ACCESS);
	if (!CHECK_EQ(saCkptActiveReplicaSet(rw), SA_AIS_OK))
		goto out;

	CHECK_EQ(create(rw, "k", "v1", 2), SA_AIS_OK);
	v[0] = iov("k", "xx", 2, 2);
	CHECK_EQ(saCkptCheckpointWrite(rw, v, 1, NULL), SA_AIS_OK);
	EXPECT_SECTION(ro, "k", "v1xx", 4);
	if (CHECK_EQ(saCkptCheckpointStatusGet(ro, &st), SA_AIS_OK)) {
		CHECK_INT(st.numberOfSections, 1);
		CHECK_INT(st.memoryUsed, 4);
		CHECK_INT(st.checkpointCreationAttributes.creationFlags,
			  SA_CKPT_WR_ACTIVE_REPLICA |
			  SA_CKPT_CHECKPOINT_COLLOCATED);
	}

	CHECK_EQ(saCkptCheckpointSynchronize(rw, CK_TIMEOUT), SA_AIS_OK);
	/* Synchronize needs a handle opened for writing. */
	CHECK_EQ(saCkptCheckpointSynchronize(ro, CK_TIMEOUT),
		 SA_AIS_ERR_ACCESS);
out:
	CHECK_EQ(saCkptCheckpointClose(ro), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointClose(rw), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointUnlink(lib, name), SA_AIS_OK);
}

/* saCkptActiveReplicaSet is only for collocated asynchronous
   checkpoints. */
static void active_replica_refused(const SaNameT *name,
				   SaCkptCheckpointCreationFlagsT flags)
{
	SaCkptCheckpointCreationAttributesT attrs = attrs_for(flags);
	SaCkptCheckpointHandleT rw = 0;

	printf("creation flags %#x\n", (unsigned int)flags);
	if (!CHECK_EQ(saCkptCheckpointOpen(lib, name, &attrs, CRW, CK_TIMEOUT,
					   &rw), SA_AIS_OK))
		return;
	CHECK_EQ(saCkptActiveReplicaSet(rw), SA_AIS_ERR_BAD_OPERATION);
	CHECK_EQ(saCkptCheckpointClose(rw), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointUnlink(lib, name), SA_AIS_OK);
}

int main(void)
{
	SaVersionT v = CK_VERSION_INIT;
	SaNameT sync, async, other;

	CHECK_START("io");
	ck_name(&sync, "io", "sync");
	ck_name(&async, "io", "async");
	ck_name(&other, "io", "other");
	if (!CHECK_EQ(saCkptInitialize(&lib, NULL, &v), SA_AIS_OK))
		return CHECK_DONE();

	write_and_read(&sync);
	active_replica(&async);
	active_replica_refused(&other, SA_CKPT_WR_ACTIVE_REPLICA);
	active_replica_refused(&other, SA_CKPT_WR_ALL_REPLICAS |
				       SA_CKPT_CHECKPOINT_COLLOCATED);

	/* Nothing left behind (NOT_EXIST is the expected answer here). */
	saCkptCheckpointUnlink(lib, &sync);
	saCkptCheckpointUnlink(lib, &async);
	saCkptCheckpointUnlink(lib, &other);
	CHECK_EQ(saCkptFinalize(lib), SA_AIS_OK);
	return CHECK_DONE();
}
