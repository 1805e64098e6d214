/*
 * sections.c: section management. The default section of a one-section
 * checkpoint; saCkptSectionCreate (named and generated ids, limits),
 * saCkptSectionIdFree, saCkptSectionDelete, saCkptSectionExpirationTimeSet
 * and expiry; saCkptSectionIterationInitialize / Next / Finalize with each
 * sectionsChosen predicate.
 */
#include "check.h"

#include <saCkpt.h>

#define RW (SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE)
#define CRW (SA_CKPT_CHECKPOINT_CREATE | RW)

#define MAX_ID 8		/* maxSectionIdSize */
#define MAX_SIZE 256		/* maxSectionSize */

static SaCkptHandleT lib;
static SaTimeT t_start;

static SaCkptSectionIdT sid(const char *s)
{
	SaCkptSectionIdT id;

	id.idLen = (SaUint16T)strlen(s);
	id.id = (SaUint8T *)(char *)s;
	return id;
}

static SaAisErrorT create_at(SaCkptCheckpointHandleT ck, const char *s,
			     const void *data, SaSizeT size, SaTimeT expires)
{
	SaCkptSectionIdT id = sid(s);
	SaCkptSectionCreationAttributesT sa;

	sa.sectionId = &id;
	sa.expirationTime = expires;
	return saCkptSectionCreate(ck, &sa, data, size);
}

static SaAisErrorT create(SaCkptCheckpointHandleT ck, const char *s,
			  const void *data, SaSizeT size)
{
	return create_at(ck, s, data, size, SA_TIME_END);
}

/* Reads section id into buf (size bytes at offset 0). */
static SaAisErrorT read_id(SaCkptCheckpointHandleT ck, SaCkptSectionIdT id,
			   void *buf, SaSizeT size, SaSizeT *got)
{
	SaCkptIOVectorElementT e;
	SaAisErrorT rc;

	memset(&e, 0, sizeof e);
	e.sectionId = id;
	e.dataBuffer = buf;
	e.dataSize = size;
	rc = saCkptCheckpointRead(ck, &e, 1, NULL);
	*got = e.readSize;
	return rc;
}

static SaAisErrorT read_section(SaCkptCheckpointHandleT ck, const char *s,
				void *buf, SaSizeT size, SaSizeT *got)
{
	return read_id(ck, sid(s), buf, size, got);
}

static SaUint32T section_count(SaCkptCheckpointHandleT ck)
{
	SaCkptCheckpointDescriptorT st = { 0 };

	if (!CHECK_EQ(saCkptCheckpointStatusGet(ck, &st), SA_AIS_OK))
		return 0xffffffffu;
	return st.numberOfSections;
}

/* ---- The default section ------------------------------------------- */

static void default_section(const SaNameT *name)
{
	SaCkptCheckpointCreationAttributesT attrs;
	SaCkptCheckpointHandleT ck = 0;
	SaCkptSectionIdT def = SA_CKPT_DEFAULT_SECTION_ID;
	SaCkptSectionIdT gen = SA_CKPT_GENERATED_SECTION_ID;
	SaCkptSectionCreationAttributesT sa;
	SaCkptIOVectorElementT e;
	char buf[64];
	SaSizeT got = 0;

	memset(&attrs, 0, sizeof attrs);
	attrs.creationFlags = SA_CKPT_WR_ALL_REPLICAS;
	attrs.checkpointSize = 1024;
	attrs.retentionDuration = SA_TIME_ONE_SECOND;
	attrs.maxSections = 1;
	attrs.maxSectionSize = 1024;
	attrs.maxSectionIdSize = MAX_ID;
	if (!CHECK_EQ(saCkptCheckpointOpen(lib, name, &attrs, CRW, CK_TIMEOUT,
					   &ck), SA_AIS_OK))
		return;

	/* maxSections == 1: the default section exists without a create. */
	CHECK_INT(section_count(ck), 1);
	CHECK_EQ(saCkptSectionOverwrite(ck, &def, "hello", 5), SA_AIS_OK);
	memset(buf, 0, sizeof buf);
	if (CHECK_EQ(read_id(ck, def, buf, sizeof buf, &got), SA_AIS_OK)) {
		CHECK_INT(got, 5);
		CHECK(memcmp(buf, "hello", 5) == 0);
	}
	memset(&e, 0, sizeof e);
	e.sectionId = def;
	e.dataBuffer = (void *)(char *)" world";
	e.dataSize = 6;
	e.dataOffset = 5;
	CHECK_EQ(saCkptCheckpointWrite(ck, &e, 1, NULL), SA_AIS_OK);
	memset(buf, 0, sizeof buf);
	if (CHECK_EQ(read_id(ck, def, buf, sizeof buf, &got), SA_AIS_OK)) {
		CHECK_INT(got, 11);
		CHECK(memcmp(buf, "hello world", 11) == 0);
	}

	/* No other section can be created. */
	CHECK_EQ(create(ck, "x", "1", 1), SA_AIS_ERR_EXIST);
	sa.sectionId = &gen;
	sa.expirationTime = SA_TIME_END;
	CHECK_EQ(saCkptSectionCreate(ck, &sa, "1", 1), SA_AIS_ERR_EXIST);

	/* The default section cannot be deleted, and its expiration time
	   (unlimited) cannot be changed. The spec names no error code;
	   INVALID_PARAM as OpenSAF. */
	CHECK_EQ(saCkptSectionDelete(ck, &def), SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(saCkptSectionExpirationTimeSet(ck, &def, SA_TIME_END),
		 SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(saCkptSectionExpirationTimeSet(ck, &def,
						ck_now() + SA_TIME_ONE_HOUR),
		 SA_AIS_ERR_INVALID_PARAM);
	CHECK_INT(section_count(ck), 1);
	memset(buf, 0, sizeof buf);
	if (CHECK_EQ(read_id(ck, def, buf, sizeof buf, &got), SA_AIS_OK))
		CHECK_INT(got, 11);

	CHECK_EQ(saCkptCheckpointClose(ck), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointUnlink(lib, name), SA_AIS_OK);
}

/* ---- Iteration helpers ---------------------------------------------- */

struct seen {
	SaUint16T len;
	SaUint8T id[64];
	SaCkptSectionDescriptorT d;
};

/* Runs a whole iteration; returns the number of sections returned (up to
   max are stored), or -1 if it could not start. */
static int collect(SaCkptCheckpointHandleT ck, SaCkptSectionsChosenT chosen,
		   SaTimeT t, struct seen *out, int max)
{
	SaCkptSectionIterationHandleT it = 0;
	SaCkptSectionDescriptorT d;
	SaAisErrorT rc;
	int n = 0;

	if (!CHECK_EQ(saCkptSectionIterationInitialize(ck, chosen, t, &it),
		      SA_AIS_OK))
		return -1;
	for (;;) {
		memset(&d, 0, sizeof d);
		rc = saCkptSectionIterationNext(it, &d);
		if (rc != SA_AIS_OK)
			break;
		if (n < max) {
			out[n].len = d.sectionId.idLen;
			memset(out[n].id, 0, sizeof out[n].id);
			if (d.sectionId.id != NULL &&
			    d.sectionId.idLen <= sizeof out[n].id)
				memcpy(out[n].id, d.sectionId.id,
				       d.sectionId.idLen);
			out[n].d = d;
		}
		if (++n > 1000)
			break;
	}
	CHECK_EQ(rc, SA_AIS_ERR_NO_SECTIONS);
	CHECK_EQ(saCkptSectionIterationFinalize(it), SA_AIS_OK);
	return n;
}

static int seen_count(const struct seen *s, int n, const SaUint8T *id,
		      SaUint16T len)
{
	int i, c = 0;

	for (i = 0; i < n; i++)
		if (s[i].len == len && memcmp(s[i].id, id, len) == 0)
			c++;
	return c;
}

static const struct seen *seen_find(const struct seen *s, int n,
				    const char *name)
{
	int i;

	for (i = 0; i < n; i++)
		if (s[i].len == strlen(name) &&
		    memcmp(s[i].id, name, s[i].len) == 0)
			return &s[i];
	return NULL;
}

/* The iteration returned exactly the named sections (plus the generated
   one if gen_len > 0), each once. */
static void expect_set(const char *what, const struct seen *s, int n,
		       const char *const *names, int count,
		       const SaUint8T *gen, SaUint16T gen_len)
{
	int i;

	printf("iteration %s\n", what);
	CHECK_INT(n, count + (gen_len > 0 ? 1 : 0));
	if (n > 16)
		n = 16;
	for (i = 0; i < count; i++)
		CHECK_INT(seen_count(s, n, (const SaUint8T *)names[i],
				     (SaUint16T)strlen(names[i])), 1);
	if (gen_len > 0)
		CHECK_INT(seen_count(s, n, gen, gen_len), 1);
}

static void descriptor(const char *label, const struct seen *s, SaSizeT size,
		       SaTimeT expires, int check_update)
{
	SaTimeT now = ck_now();
	int ok;

	if (!CHECK(s != NULL)) {
		printf("    (section %s not returned)\n", label);
		return;
	}
	ok = CHECK_INT(s->d.sectionSize, size);
	ok &= CHECK_INT(s->d.expirationTime, expires);
	ok &= CHECK_INT(s->d.sectionState, SA_CKPT_SECTION_VALID);
	if (check_update) {
		ok &= CHECK(s->d.lastUpdate >=
			    t_start - 2 * SA_TIME_ONE_SECOND);
		ok &= CHECK(s->d.lastUpdate <= now + 2 * SA_TIME_ONE_SECOND);
	}
	if (!ok)
		printf("    (descriptor of section %s)\n", label);
}

/* ---- Sections of a multi-section checkpoint ------------------------- */

static void many_sections(const SaNameT *name)
{
	SaCkptCheckpointCreationAttributesT attrs;
	SaCkptCheckpointHandleT ck = 0, ro = 0;
	SaCkptSectionIdT gen = SA_CKPT_GENERATED_SECTION_ID;
	SaCkptSectionIdT s1 = sid("s1"), s2 = sid("s2"), e1 = sid("e1");
	SaCkptSectionIdT id9 = sid("ninechars");
	SaCkptSectionCreationAttributesT sa;
	SaCkptSectionIterationHandleT it = 0, it2 = 0;
	SaCkptSectionDescriptorT d;
	SaUint8T genid[64];
	SaUint16T genlen = 0;
	static char big[MAX_SIZE + 1];
	char buf[64];
	SaSizeT got = 0;
	SaTimeT t4, t_ow;
	SaAisErrorT rc = SA_AIS_OK;
	struct seen seen[16];
	const char *const all[] = { "s1", "s3", "s4" };
	const char *const forever[] = { "s1", "s3" };
	const char *const leq[] = { "s4" };
	int n, i;

	memset(big, 'b', sizeof big);
	memset(&attrs, 0, sizeof attrs);
	attrs.creationFlags = SA_CKPT_WR_ALL_REPLICAS;
	attrs.checkpointSize = 4 * MAX_SIZE;
	attrs.retentionDuration = SA_TIME_ONE_SECOND;
	attrs.maxSections = 4;
	attrs.maxSectionSize = MAX_SIZE;
	attrs.maxSectionIdSize = MAX_ID;
	if (!CHECK_EQ(saCkptCheckpointOpen(lib, name, &attrs, CRW, CK_TIMEOUT,
					   &ck), SA_AIS_OK))
		return;
	CHECK_EQ(saCkptCheckpointOpen(lib, name, NULL, SA_CKPT_CHECKPOINT_READ,
				      CK_TIMEOUT, &ro), SA_AIS_OK);

	/* maxSections > 1: no default section. */
	CHECK_INT(section_count(ck), 0);

	/* Named sections; a duplicate id. */
	CHECK_EQ(create(ck, "s1", "abc", 3), SA_AIS_OK);
	CHECK_EQ(create(ck, "s2", "defg", 4), SA_AIS_OK);
	CHECK_EQ(create(ck, "s1", "zzz", 3), SA_AIS_ERR_EXIST);
	memset(buf, 0, sizeof buf);
	if (CHECK_EQ(read_section(ck, "s1", buf, sizeof buf, &got), SA_AIS_OK)) {
		CHECK_INT(got, 3);
		CHECK(memcmp(buf, "abc", 3) == 0);
	}
	CHECK_INT(section_count(ck), 2);

	/* Limits and bad arguments (two sections exist, so NO_SPACE cannot
	   apply). */
	sa.sectionId = &id9;
	sa.expirationTime = SA_TIME_END;
	CHECK_EQ(saCkptSectionCreate(ck, &sa, "x", 1), SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(create(ck, "big", big, MAX_SIZE + 1), SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(create(ck, "nul", NULL, 4), SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(saCkptSectionCreate(ck, NULL, "x", 1),
		 SA_AIS_ERR_INVALID_PARAM);
	sa.sectionId = NULL;
	CHECK_EQ(saCkptSectionCreate(ck, &sa, "x", 1), SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(create(ro, "r2", "x", 1), SA_AIS_ERR_ACCESS);
	CHECK_INT(section_count(ck), 2);

	/* At the limits: an id of maxSectionIdSize bytes, data of
	   maxSectionSize bytes. */
	if (CHECK_EQ(create(ck, "exactly8", big, MAX_SIZE), SA_AIS_OK)) {
		memset(buf, 0, sizeof buf);
		CHECK_EQ(read_section(ck, "exactly8", buf, 8, &got), SA_AIS_OK);
		CHECK_INT(got, 8);
		CHECK_EQ(saCkptSectionDelete(ck, &(SaCkptSectionIdT){
				 8, (SaUint8T *)"exactly8" }), SA_AIS_OK);
	}

	/* A generated id: the library fills idLen and id. */
	sa.sectionId = &gen;
	sa.expirationTime = SA_TIME_END;
	if (CHECK_EQ(saCkptSectionCreate(ck, &sa, "gen!", 4), SA_AIS_OK) &&
	    CHECK(gen.id != NULL) && CHECK(gen.idLen > 0) &&
	    CHECK(gen.idLen <= MAX_ID)) {
		genlen = gen.idLen;
		memcpy(genid, gen.id, genlen);
		memset(buf, 0, sizeof buf);
		if (CHECK_EQ(read_id(ck, gen, buf, sizeof buf, &got),
			     SA_AIS_OK)) {
			CHECK_INT(got, 4);
			CHECK(memcmp(buf, "gen!", 4) == 0);
		}
		CHECK_EQ(saCkptSectionIdFree(ck, gen.id), SA_AIS_OK);
	}
	CHECK_INT(section_count(ck), 3);

	/* Delete. */
	CHECK_EQ(saCkptSectionDelete(ro, &s2), SA_AIS_ERR_ACCESS);
	CHECK_EQ(saCkptSectionDelete(ck, NULL), SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(saCkptSectionDelete(ck, &s2), SA_AIS_OK);
	CHECK_EQ(saCkptSectionDelete(ck, &s2), SA_AIS_ERR_NOT_EXIST);
	CHECK_EQ(saCkptSectionOverwrite(ck, &s2, "x", 1), SA_AIS_ERR_NOT_EXIST);
	CHECK_EQ(read_section(ck, "s2", buf, sizeof buf, &got),
		 SA_AIS_ERR_NOT_EXIST);
	CHECK_EQ(saCkptSectionExpirationTimeSet(ck, &s2, SA_TIME_END),
		 SA_AIS_ERR_NOT_EXIST);
	CHECK_INT(section_count(ck), 2);

	/* Expiration time: set, refused on a read-only handle; an expiration
	   time in the past deletes the section. */
	CHECK_EQ(saCkptSectionExpirationTimeSet(ro, &s1, SA_TIME_END),
		 SA_AIS_ERR_ACCESS);
	CHECK_EQ(saCkptSectionExpirationTimeSet(ck, NULL, SA_TIME_END),
		 SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(saCkptSectionExpirationTimeSet(ck, &s1, SA_TIME_END),
		 SA_AIS_OK);
	if (CHECK_EQ(create_at(ck, "e1", "exp", 3,
			       ck_now() + SA_TIME_ONE_HOUR), SA_AIS_OK)) {
		CHECK_EQ(read_section(ck, "e1", buf, sizeof buf, &got),
			 SA_AIS_OK);
		CHECK_EQ(saCkptSectionExpirationTimeSet(
				 ck, &e1, ck_now() - SA_TIME_ONE_SECOND),
			 SA_AIS_OK);
		for (i = 0; i < 50; i++) {
			rc = read_section(ck, "e1", buf, sizeof buf, &got);
			if (rc != SA_AIS_OK)
				break;
			ck_sleep_ms(100);
		}
		CHECK_EQ(rc, SA_AIS_ERR_NOT_EXIST);
		CHECK_EQ(saCkptSectionDelete(ck, &e1), SA_AIS_ERR_NOT_EXIST);
	}
	/* A section created to expire soon goes away by itself. */
	if (CHECK_EQ(create_at(ck, "e2", "exp", 3,
			       ck_now() + 500 * SA_TIME_ONE_MILLISECOND),
		     SA_AIS_OK)) {
		for (i = 0; i < 60; i++) {
			ck_sleep_ms(100);
			rc = read_section(ck, "e2", buf, sizeof buf, &got);
			if (rc != SA_AIS_OK)
				break;
		}
		CHECK_EQ(rc, SA_AIS_ERR_NOT_EXIST);
	}
	CHECK_INT(section_count(ck), 2);

	/* Fill up: s1 (3 bytes, forever), generated (4, forever),
	   s3 (empty, forever), s4 (4, expires at t4). */
	CHECK_EQ(create(ck, "s3", NULL, 0), SA_AIS_OK);
	t4 = ck_now() + SA_TIME_ONE_HOUR;
	CHECK_EQ(create_at(ck, "s4", "four", 4, t4), SA_AIS_OK);
	CHECK_INT(section_count(ck), 4);
	CHECK_EQ(create(ck, "s5", "x", 1), SA_AIS_ERR_NO_SPACE);
	CHECK_INT(section_count(ck), 4);
	t_ow = ck_now();
	CHECK_EQ(saCkptSectionOverwrite(ck, &s1, "ABC", 3), SA_AIS_OK);

	/* Iteration over all sections: each exactly once, then
	   NO_SECTIONS. */
	n = collect(ck, SA_CKPT_SECTIONS_ANY, 0, seen, 16);
	expect_set("ANY", seen, n, all, 3, genid, genlen);
	if (n == 4) {
		const struct seen *p = seen_find(seen, n, "s1");

		descriptor("s1", p, 3, SA_TIME_END, 1);
		if (p != NULL) {
			CHECK(p->d.lastUpdate >= t_ow - SA_TIME_ONE_SECOND);
			CHECK(p->d.lastUpdate <= ck_now() + SA_TIME_ONE_SECOND);
		}
		descriptor("s3", seen_find(seen, n, "s3"), 0, SA_TIME_END,
			   0);
		descriptor("s4", seen_find(seen, n, "s4"), 4, t4, 1);
		for (i = 0; i < n; i++)
			if (genlen > 0 && seen[i].len == genlen &&
			    memcmp(seen[i].id, genid, genlen) == 0)
				descriptor("(generated)", &seen[i], 4,
					   SA_TIME_END, 1);
	}
	/* The same through the read-only handle. */
	n = collect(ro, SA_CKPT_SECTIONS_ANY, 0, seen, 16);
	expect_set("ANY (read-only handle)", seen, n, all, 3, genid, genlen);

	/* The predicates. */
	n = collect(ck, SA_CKPT_SECTIONS_FOREVER, 0, seen, 16);
	expect_set("FOREVER", seen, n, forever, 2, genid, genlen);
	n = collect(ck, SA_CKPT_SECTIONS_LEQ_EXPIRATION_TIME, t4, seen, 16);
	expect_set("LEQ t4", seen, n, leq, 1, NULL, 0);
	n = collect(ck, SA_CKPT_SECTIONS_LEQ_EXPIRATION_TIME, t4 - 1, seen, 16);
	expect_set("LEQ t4-1", seen, n, NULL, 0, NULL, 0);
	n = collect(ck, SA_CKPT_SECTIONS_GEQ_EXPIRATION_TIME, t4, seen, 16);
	expect_set("GEQ t4", seen, n, all, 3, genid, genlen);
	n = collect(ck, SA_CKPT_SECTIONS_GEQ_EXPIRATION_TIME, t4 + 1, seen, 16);
	expect_set("GEQ t4+1", seen, n, forever, 2, genid, genlen);
	n = collect(ck, SA_CKPT_SECTIONS_CORRUPTED, 0, seen, 16);
	expect_set("CORRUPTED", seen, n, NULL, 0, NULL, 0);

	/* Bad arguments. */
	CHECK_EQ(saCkptSectionIterationInitialize(
			 ck, (SaCkptSectionsChosenT)0, 0, &it),
		 SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(saCkptSectionIterationInitialize(
			 ck, (SaCkptSectionsChosenT)6, 0, &it),
		 SA_AIS_ERR_INVALID_PARAM);
	CHECK_EQ(saCkptSectionIterationInitialize(ck, SA_CKPT_SECTIONS_ANY, 0,
						  NULL),
		 SA_AIS_ERR_INVALID_PARAM);
	if (CHECK_EQ(saCkptSectionIterationInitialize(
			     ck, SA_CKPT_SECTIONS_ANY, 0, &it), SA_AIS_OK)) {
		CHECK_EQ(saCkptSectionIterationNext(it, NULL),
			 SA_AIS_ERR_INVALID_PARAM);
		CHECK_EQ(saCkptSectionIterationNext(it, &d), SA_AIS_OK);
		/* Finalize ends the iteration handle. */
		CHECK_EQ(saCkptSectionIterationFinalize(it), SA_AIS_OK);
		CHECK_EQ(saCkptSectionIterationNext(it, &d),
			 SA_AIS_ERR_BAD_HANDLE);
		CHECK_EQ(saCkptSectionIterationFinalize(it),
			 SA_AIS_ERR_BAD_HANDLE);
	}
	CHECK_EQ(saCkptSectionIterationNext(0, &d), SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(saCkptSectionIterationNext(12345, &d), SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(saCkptSectionIterationFinalize(~0ULL), SA_AIS_ERR_BAD_HANDLE);

	/* Closing the checkpoint handle ends its iterations. */
	if (CHECK_EQ(saCkptSectionIterationInitialize(
			     ro, SA_CKPT_SECTIONS_ANY, 0, &it2), SA_AIS_OK)) {
		CHECK_EQ(saCkptCheckpointClose(ro), SA_AIS_OK);
		CHECK_EQ(saCkptSectionIterationNext(it2, &d),
			 SA_AIS_ERR_BAD_HANDLE);
		CHECK_EQ(saCkptSectionIterationFinalize(it2),
			 SA_AIS_ERR_BAD_HANDLE);
	} else {
		CHECK_EQ(saCkptCheckpointClose(ro), SA_AIS_OK);
	}

	CHECK_EQ(saCkptCheckpointClose(ck), SA_AIS_OK);
	CHECK_EQ(saCkptCheckpointUnlink(lib, name), SA_AIS_OK);
}

/* Finalizing the library handle ends the iterations of its checkpoints. */
static void finalize_ends_iteration(const SaNameT *name)
{
	SaCkptCheckpointCreationAttributesT attrs;
	SaCkptHandleT other = 0;
	SaVersionT v = CK_VERSION_INIT;
	SaCkptCheckpointHandleT ck = 0;
	SaCkptSectionIterationHandleT it = 0;
	SaCkptSectionDescriptorT d;

	memset(&attrs, 0, sizeof attrs);
	attrs.creationFlags = SA_CKPT_WR_ALL_REPLICAS;
	attrs.checkpointSize = 1024;
	attrs.retentionDuration = SA_TIME_ONE_SECOND;
	attrs.maxSections = 4;
	attrs.maxSectionSize = 256;
	attrs.maxSectionIdSize = MAX_ID;
	if (!CHECK_EQ(saCkptInitialize(&other, NULL, &v), SA_AIS_OK))
		return;
	if (CHECK_EQ(saCkptCheckpointOpen(other, name, &attrs, CRW,
					  CK_TIMEOUT, &ck), SA_AIS_OK)) {
		CHECK_EQ(create(ck, "a", "1", 1), SA_AIS_OK);
		CHECK_EQ(saCkptSectionIterationInitialize(
				 ck, SA_CKPT_SECTIONS_ANY, 0, &it), SA_AIS_OK);
	}
	CHECK_EQ(saCkptFinalize(other), SA_AIS_OK);
	CHECK_EQ(saCkptSectionIterationNext(it, &d), SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(saCkptSectionIterationFinalize(it), SA_AIS_ERR_BAD_HANDLE);
	CHECK_EQ(saCkptCheckpointUnlink(lib, name), SA_AIS_OK);
}

int main(void)
{
	SaVersionT v = CK_VERSION_INIT;
	SaNameT one, many, fin;

	CHECK_START("sections");
	t_start = ck_now();
	ck_name(&one, "sections", "one");
	ck_name(&many, "sections", "many");
	ck_name(&fin, "sections", "fin");
	if (!CHECK_EQ(saCkptInitialize(&lib, NULL, &v), SA_AIS_OK))
		return CHECK_DONE();

	default_section(&one);
	many_sections(&many);
	finalize_ends_iteration(&fin);

	/* Nothing left behind (NOT_EXIST is the expected answer here). */
	saCkptCheckpointUnlink(lib, &one);
	saCkptCheckpointUnlink(lib, &many);
	saCkptCheckpointUnlink(lib, &fin);
	CHECK_EQ(saCkptFinalize(lib), SA_AIS_OK);
	return CHECK_DONE();
}
