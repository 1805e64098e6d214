/*
 * profiles.c: the compatibility profiles (CKPT_SA_PROFILE, read at each
 * saCkptInitialize), end to end.
 *
 * strict (default): free-form names; another retention on open is EXIST;
 *   a write past maxSectionSize is INVALID_PARAM; SAFplus's flag 0x10 is
 *   INVALID_PARAM.
 * opensaf: names must start with "safCkpt="; section ids of 50 bytes or
 *   more are INVALID_PARAM; a write element past maxSectionSize by its
 *   offset is NO_RESOURCES (by its size alone, INVALID_PARAM); another
 *   retention on open is OK.
 * openais / safplus: a name length that counts a trailing NUL names the
 *   same checkpoint as without it; flag 0x10 (CL_CKPT_DISTRIBUTED) is
 *   accepted.
 * An unknown profile name fails saCkptInitialize with INVALID_PARAM.
 */
#include "check.h"

#include <saCkpt.h>

#define CRW (SA_CKPT_CHECKPOINT_CREATE | SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE)

static SaCkptHandleT init(const char *profile)
{
	SaVersionT v = CK_VERSION_INIT;
	SaCkptHandleT lib = 0;

	setenv("CKPT_SA_PROFILE", profile, 1);
	CHECK_EQ(saCkptInitialize(&lib, NULL, &v), SA_AIS_OK);
	return lib;
}

static void set_name(SaNameT *n, const char *s, int count_nul)
{
	n->length = (SaUint16T)(strlen(s) + (count_nul ? 1 : 0));
	memcpy(n->value, s, strlen(s) + 1);
}

int main(void)
{
	SaCkptCheckpointCreationAttributesT attrs = {SA_CKPT_WR_ALL_REPLICAS, 2 * 64, SA_TIME_ONE_SECOND, 2, 64, 64};
	SaCkptCheckpointCreationAttributesT other = attrs;
	SaCkptCheckpointHandleT ck, ck2;
	SaCkptHandleT lib;
	SaNameT name, plain;
	char text[128], free_form[128];
	unsigned char sid_bytes[] = "s";
	unsigned char long_id[50];
	SaCkptSectionIdT sid = {1, sid_bytes}, lid = {50, long_id};
	SaCkptSectionCreationAttributesT ca = {&sid, SA_TIME_END}, lca = {&lid, SA_TIME_END};
	SaCkptIOVectorElementT e = {{1, sid_bytes}, (void *)"xy", 2, 63, 0};
	SaUint32T bad;
	SaVersionT v = CK_VERSION_INIT;

	CHECK_START("profiles");
	memset(long_id, 'i', sizeof long_id);
	snprintf(text, sizeof text, "safCkpt=ctest_profiles_%ld", (long)getpid());
	snprintf(free_form, sizeof free_form, "ctest profiles %ld", (long)getpid());
	other.retentionDuration = SA_TIME_ONE_HOUR;

	/* strict */
	lib = init("strict");
	set_name(&plain, free_form, 0);
	CHECK_EQ(saCkptCheckpointOpen(lib, &plain, &attrs, CRW, CK_TIMEOUT, &ck), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointOpen(lib, &plain, &other, CRW, CK_TIMEOUT, &ck2), SA_AIS_ERR_EXIST);
	CHECK_EQ(saCkptSectionCreate(ck, &ca, NULL, 0), SA_AIS_OK);
	CHECK_EQ(saCkptSectionCreate(ck, &lca, NULL, 0), SA_AIS_OK);
	bad = 9;
	CHECK_EQ(saCkptCheckpointWrite(ck, &e, 1, &bad), SA_AIS_ERR_INVALID_PARAM);
	CHECK_INT(bad, 0);
	other = attrs;
	other.creationFlags |= 0x10;
	set_name(&name, text, 0);
	CHECK_EQ(saCkptCheckpointOpen(lib, &name, &other, CRW, CK_TIMEOUT, &ck2), SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(saCkptCheckpointUnlink(lib, &plain), SA_AIS_OK);
	CHECK_EQ(saCkptFinalize(lib), SA_AIS_OK);

	/* opensaf */
	lib = init("opensaf");
	CHECK_EQ(saCkptCheckpointOpen(lib, &plain, &attrs, CRW, CK_TIMEOUT, &ck), SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(saCkptCheckpointUnlink(lib, &plain), SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(saCkptCheckpointOpen(lib, &name, &attrs, CRW, CK_TIMEOUT, &ck), SA_AIS_OK);
	other = attrs;
	other.retentionDuration = SA_TIME_ONE_HOUR;
	CHECK_EQ(saCkptCheckpointOpen(lib, &name, &other, CRW, CK_TIMEOUT, &ck2), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointClose(ck2), SA_AIS_OK);
	CHECK_EQ(saCkptSectionCreate(ck, &lca, NULL, 0), SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(saCkptSectionCreate(ck, &ca, NULL, 0), SA_AIS_OK);
	bad = 9;
	CHECK_EQ(saCkptCheckpointWrite(ck, &e, 1, &bad), SA_AIS_ERR_NO_RESOURCES);
	CHECK_INT(bad, 0);
	e.dataOffset = 0;
	e.dataSize = 65;
	bad = 9;
	CHECK_EQ(saCkptCheckpointWrite(ck, &e, 1, &bad), SA_AIS_ERR_INVALID_PARAM);
	CHECK_INT(bad, 0);
	e.dataSize = 2;
	CHECK_EQ(saCkptCheckpointWrite(ck, &e, 1, &bad), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointUnlink(lib, &name), SA_AIS_OK);
	CHECK_EQ(saCkptFinalize(lib), SA_AIS_OK);

	/* openais */
	lib = init("openais");
	set_name(&name, text, 1); /* the length counts the NUL */
	other = attrs;
	other.creationFlags |= 0x10; /* CL_CKPT_DISTRIBUTED */
	CHECK_EQ(saCkptCheckpointOpen(lib, &name, &other, CRW, CK_TIMEOUT, &ck), SA_AIS_OK);
	CHECK_EQ(saCkptSectionCreate(ck, &ca, "ab", 2), SA_AIS_OK);
	set_name(&plain, text, 0);
	CHECK_EQ(saCkptCheckpointOpen(lib, &plain, NULL, SA_CKPT_CHECKPOINT_READ, CK_TIMEOUT, &ck2), SA_AIS_OK);
	{
		char out[4] = {0};
		SaCkptIOVectorElementT r = {{1, sid_bytes}, out, sizeof out, 0, 0};
		CHECK_EQ(saCkptCheckpointRead(ck2, &r, 1, NULL), SA_AIS_OK);
		CHECK(memcmp(out, "ab", 2) == 0);
	}
	CHECK_EQ(saCkptCheckpointUnlink(lib, &name), SA_AIS_OK);
	CHECK_EQ(saCkptFinalize(lib), SA_AIS_OK);

	/* unknown */
	setenv("CKPT_SA_PROFILE", "nonsense", 1);
	CHECK_EQ(saCkptInitialize(&lib, NULL, &v), SA_AIS_ERR_INVALID_PARAM);
	unsetenv("CKPT_SA_PROFILE");
	return CHECK_DONE();
}
