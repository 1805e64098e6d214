/*
 * check.h: the shared helper of libSaCkpt's C test programs.
 *
 *   CHECK(cond)               cond must be true
 *   CHECK_EQ(call, expected)  an SaAisErrorT must equal expected
 *   CHECK_INT(value, expected) an integer must equal expected
 *
 * Each prints file:line, the expression and (for the last two) the expected
 * and actual values when it fails, counts the failure and evaluates to 1 if
 * it passed, 0 if not, so a test can skip what depends on a failed step.
 * main() starts with CHECK_START("name") (unbuffered output, and a 300 s
 * watchdog so a hung call fails the program) and ends with
 * `return CHECK_DONE();`, which is nonzero if any check failed.
 *
 * Also: ck_name() (a checkpoint name unique to the program and run),
 * ck_now() (the current SaTimeT), ck_sleep_ms(), CK_TIMEOUT (for blocking
 * calls) and CK_VERSION_INIT (B.02.02).
 *
 * Programs include this header first: it selects POSIX.1-2008 (they are
 * compiled with -std=c99, which hides POSIX declarations otherwise).
 */
#ifndef CKPT_TEST_CHECK_H
#define CKPT_TEST_CHECK_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <saAis.h>

/* Timeout passed to the blocking calls (open, synchronize). */
#define CK_TIMEOUT (10 * SA_TIME_ONE_SECOND)

/* The version the tests ask for. */
#define CK_VERSION_INIT {'B', 2, 2}

static const char *ck_program = "test";
static int ck_checks;
static int ck_failures;

static inline const char *ck_err_name(SaAisErrorT e)
{
	static const char *const names[] = {
		"(0)", "SA_AIS_OK", "SA_AIS_ERR_LIBRARY", "SA_AIS_ERR_VERSION",
		"SA_AIS_ERR_INIT", "SA_AIS_ERR_TIMEOUT", "SA_AIS_ERR_TRY_AGAIN",
		"SA_AIS_ERR_INVALID_PARAM", "SA_AIS_ERR_NO_MEMORY",
		"SA_AIS_ERR_BAD_HANDLE", "SA_AIS_ERR_BUSY", "SA_AIS_ERR_ACCESS",
		"SA_AIS_ERR_NOT_EXIST", "SA_AIS_ERR_NAME_TOO_LONG",
		"SA_AIS_ERR_EXIST", "SA_AIS_ERR_NO_SPACE", "SA_AIS_ERR_INTERRUPT",
		"SA_AIS_ERR_NAME_NOT_FOUND", "SA_AIS_ERR_NO_RESOURCES",
		"SA_AIS_ERR_NOT_SUPPORTED", "SA_AIS_ERR_BAD_OPERATION",
		"SA_AIS_ERR_FAILED_OPERATION", "SA_AIS_ERR_MESSAGE_ERROR",
		"SA_AIS_ERR_QUEUE_FULL", "SA_AIS_ERR_QUEUE_NOT_AVAILABLE",
		"SA_AIS_ERR_BAD_FLAGS", "SA_AIS_ERR_TOO_BIG",
		"SA_AIS_ERR_NO_SECTIONS", "SA_AIS_ERR_NO_OP",
		"SA_AIS_ERR_REPAIR_PENDING", "SA_AIS_ERR_NO_BINDINGS",
		"SA_AIS_ERR_UNAVAILABLE", "SA_AIS_ERR_CAMPAIGN_ERROR_DETECTED",
		"SA_AIS_ERR_CAMPAIGN_PROC_FAILED", "SA_AIS_ERR_CAMPAIGN_CANCELED",
		"SA_AIS_ERR_CAMPAIGN_FAILED", "SA_AIS_ERR_CAMPAIGN_SUSPENDED",
		"SA_AIS_ERR_CAMPAIGN_SUSPENDING", "SA_AIS_ERR_ACCESS_DENIED",
		"SA_AIS_ERR_NOT_READY", "SA_AIS_ERR_DEPLOYMENT",
	};
	unsigned int i = (unsigned int)e;

	return i < sizeof names / sizeof names[0] ? names[i] : "(unknown)";
}

static inline int ck_true(const char *file, int line, const char *expr,
			  int ok)
{
	ck_checks++;
	if (!ok) {
		ck_failures++;
		printf("%s:%d: FAIL: %s\n", file, line, expr);
	}
	return ok;
}

static inline int ck_eq(const char *file, int line, const char *expr,
			SaAisErrorT actual, SaAisErrorT expected)
{
	ck_checks++;
	if (actual != expected) {
		ck_failures++;
		printf("%s:%d: FAIL: %s\n    expected %s (%d), got %s (%d)\n",
		       file, line, expr, ck_err_name(expected), (int)expected,
		       ck_err_name(actual), (int)actual);
		return 0;
	}
	return 1;
}

static inline int ck_int(const char *file, int line, const char *expr,
			 unsigned long long actual, unsigned long long expected)
{
	ck_checks++;
	if (actual != expected) {
		ck_failures++;
		printf("%s:%d: FAIL: %s\n    expected %llu (%#llx), got %llu (%#llx)\n",
		       file, line, expr, expected, expected, actual, actual);
		return 0;
	}
	return 1;
}

#define CHECK(cond) ck_true(__FILE__, __LINE__, #cond, (cond) ? 1 : 0)
#define CHECK_EQ(call, expected) \
	ck_eq(__FILE__, __LINE__, #call, (call), (expected))
#define CHECK_INT(value, expected) \
	ck_int(__FILE__, __LINE__, #value, \
	       (unsigned long long)(value), (unsigned long long)(expected))

/* Unbuffered output (a crash loses nothing) and a watchdog: a call that
   hangs ends the program with SIGALRM, a failure. */
static inline void ck_start(const char *program)
{
	ck_program = program;
	setvbuf(stdout, NULL, _IONBF, 0);
	alarm(300);
}

static inline int ck_done(void)
{
	printf("%s: %d checks, %d failed\n", ck_program, ck_checks,
	       ck_failures);
	return ck_failures == 0 ? 0 : 1;
}

#define CHECK_START(program) ck_start(program)
#define CHECK_DONE() ck_done()

/* The current absolute time, in the SaTimeT sense (ns since the epoch). */
static inline SaTimeT ck_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (SaTimeT)ts.tv_sec * SA_TIME_ONE_SECOND + (SaTimeT)ts.tv_nsec;
}

static inline void ck_sleep_ms(long ms)
{
	struct timespec ts;

	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0)
		;
}

#ifndef SA_EXTENDED_NAME_SOURCE
/* *name = "safCkpt=ctest_<area>_<pid>_<tag>": unique to this program and
   run, so tests may run in parallel over one CKPT_DIR. */
static inline void ck_name(SaNameT *name, const char *area, const char *tag)
{
	char buf[SA_MAX_NAME_LENGTH];
	int n = snprintf(buf, sizeof buf, "safCkpt=ctest_%s_%ld_%s", area,
			 (long)getpid(), tag);

	if (n < 0 || (size_t)n >= sizeof buf) {
		printf("%s: name too long\n", ck_program);
		exit(2);
	}
	memset(name, 0, sizeof *name);
	name->length = (SaUint16T)n;
	memcpy(name->value, buf, (size_t)n);
}
#endif

#endif /* CKPT_TEST_CHECK_H */
