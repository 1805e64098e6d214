/*
 * names.c: extended names (SA_EXTENDED_NAME_SOURCE). saAisNameLend and
 * saAisNameBorrow, the OpenSAF encoding of a lent name in the opaque
 * SaNameT, and checkpoints opened by short and long lent names.
 *
 * Long names are allowed only when SA_ENABLE_EXTENDED_NAMES is "1" as the
 * library first reads it (at the first name it decodes), so the program sets
 * it before any call.
 */
#define SA_EXTENDED_NAME_SOURCE 1

#include "check.h"

#include <saCkpt.h>

#define CRW (SA_CKPT_CHECKPOINT_CREATE | SA_CKPT_CHECKPOINT_READ | \
	     SA_CKPT_CHECKPOINT_WRITE)

static SaCkptHandleT lib;

static void open_by(const SaNameT *name)
{
	SaCkptCheckpointCreationAttributesT attrs;
	SaCkptCheckpointHandleT ck = 0, ck2 = 0;

	memset(&attrs, 0, sizeof attrs);
	attrs.creationFlags = SA_CKPT_WR_ALL_REPLICAS;
	attrs.checkpointSize = 1024;
	attrs.retentionDuration = SA_TIME_ONE_SECOND;
	attrs.maxSections = 1;
	attrs.maxSectionSize = 1024;
	attrs.maxSectionIdSize = 8;
	if (!CHECK_EQ(saCkptCheckpointOpen(lib, name, &attrs, CRW, CK_TIMEOUT,
					   &ck), SA_AIS_OK))
		return;
	/* The same name finds the same checkpoint. */
	CHECK_EQ(saCkptCheckpointOpen(lib, name, NULL, SA_CKPT_CHECKPOINT_READ,
				      CK_TIMEOUT, &ck2), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointClose(ck2), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointClose(ck), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointUnlink(lib, name), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointUnlink(lib, name), SA_AIS_ERR_NOT_EXIST);
}

/* A name shorter than SA_MAX_UNEXTENDED_NAME_LENGTH: the classic layout,
   length then the bytes and a NUL. */
static void short_name(const char *s)
{
	SaNameT n;
	size_t len = strlen(s);
	const unsigned char *bytes = (const unsigned char *)&n;

	printf("short name of %zu bytes\n", len);
	memset(&n, 0xee, sizeof n);
	saAisNameLend(s, &n);
	CHECK_INT(n._opaque[0], len);
	CHECK(memcmp(bytes + 2, s, len + 1) == 0);
	CHECK(strcmp(saAisNameBorrow(&n), s) == 0);
	open_by(&n);
}

/* A longer name: magic 0xcd2b, then the borrowed pointer at byte 8. */
static void long_name(const char *s)
{
	SaNameT n;
	const char *p = NULL;

	printf("long name of %zu bytes\n", strlen(s));
	memset(&n, 0, sizeof n);
	saAisNameLend(s, &n);
	CHECK_INT(n._opaque[0], 0xcd2b);
	memcpy(&p, (const unsigned char *)&n + 8, sizeof p);
	CHECK(p == s);
	CHECK(saAisNameBorrow(&n) == s);
	open_by(&n);
}

int main(void)
{
	SaVersionT v = CK_VERSION_INIT;
	static char name[2100];
	int len;

	/* Before the library first reads it (at its first name). */
	setenv("SA_ENABLE_EXTENDED_NAMES", "1", 1);

	CHECK_START("names");
	if (!CHECK_EQ(saCkptInitialize(&lib, NULL, &v), SA_AIS_OK))
		return CHECK_DONE();

	len = snprintf(name, sizeof name, "safCkpt=ctest_names_%ld_short",
		       (long)getpid());
	short_name(name);

	/* 255 bytes: the longest short name. */
	memset(name + len, 'x', 255 - (size_t)len);
	name[255] = '\0';
	short_name(name);

	/* 300 bytes. */
	memset(name + len, 'y', 300 - (size_t)len);
	name[300] = '\0';
	long_name(name);

	/* 2048 bytes, the longest; one more is too big. */
	memset(name + len, 'z', 2048 - (size_t)len);
	name[2048] = '\0';
	long_name(name);
	{
		SaNameT n;
		SaCkptCheckpointHandleT ck;

		name[2048] = 'z';
		name[2049] = '\0';
		saAisNameLend(name, &n);
		CHECK_EQ(saCkptCheckpointOpen(lib, &n, NULL, SA_CKPT_CHECKPOINT_READ,
					      CK_TIMEOUT, &ck), SA_AIS_ERR_TOO_BIG);
		CHECK_EQ(saCkptCheckpointUnlink(lib, &n), SA_AIS_ERR_TOO_BIG);
	}

	CHECK_EQ(saCkptFinalize(lib), SA_AIS_OK);
	return CHECK_DONE();
}
