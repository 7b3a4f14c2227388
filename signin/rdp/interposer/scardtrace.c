/*
 * scardtrace: a PC/SC (libpcsclite) interposer for the RDP smart-card redirection lab.
 *
 * Defines every function libpcsclite.so.1 exports, forwards each to the real library and
 * appends one JSON line per call to the file named by VCARD_SCARD_LOG:
 *
 *   {"call":"SCardTransmit","rc":0,"sent":13,"received":258,"start":...,"end":...,"pid":...}
 *
 * (start/end: CLOCK_REALTIME seconds). VCARD_SCARD_RTT_MS makes each call that MS-RDPESC
 * sends to the RDP client cost that round trip (half before, half after the real call);
 * SCardFreeMemory stays on the RDP server, so it is logged with "local":true and not delayed.
 * VCARD_SCARD_LIB is the path of the real libpcsclite; without it the next object in the
 * lookup order is used (dlsym RTLD_NEXT, the LD_PRELOAD case).
 *
 * Loaded three ways (signin/rdp/interposer.py): LD_PRELOAD for programs linked with
 * libpcsclite, a directory on LD_LIBRARY_PATH where it is named libpcsclite.so.1 for
 * programs that dlopen that name (pyscard), and OpenSC's reader_driver pcsc
 * provider_library option (OpenSC dlopens the library itself). Calls that the real
 * library makes to itself are not counted (per-thread nesting depth).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <winscard.h>

const SCARD_IO_REQUEST g_rgSCardT0Pci = {SCARD_PROTOCOL_T0, sizeof(SCARD_IO_REQUEST)};
const SCARD_IO_REQUEST g_rgSCardT1Pci = {SCARD_PROTOCOL_T1, sizeof(SCARD_IO_REQUEST)};
const SCARD_IO_REQUEST g_rgSCardRawPci = {SCARD_PROTOCOL_RAW, sizeof(SCARD_IO_REQUEST)};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void *real_library;
static int log_fd = -1;
static long long half_rtt_ns;
static __thread int depth;

static void setup(void)
{
    const char *path = getenv("VCARD_SCARD_LIB");
    if (path && *path) {
        real_library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!real_library)
            fprintf(stderr, "scardtrace: cannot load %s: %s\n", path, dlerror());
    }
    const char *log = getenv("VCARD_SCARD_LOG");
    if (log && *log) {
        log_fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (log_fd < 0)
            fprintf(stderr, "scardtrace: cannot open %s: %s\n", log, strerror(errno));
    }
    const char *rtt = getenv("VCARD_SCARD_RTT_MS");
    if (rtt && *rtt) {
        char *end = NULL;
        double ms = strtod(rtt, &end);
        if (end && *end == '\0' && ms > 0 && ms < 600000)
            half_rtt_ns = (long long)(ms * 1e6 / 2);
        else
            fprintf(stderr, "scardtrace: VCARD_SCARD_RTT_MS=%s is not a delay in ms; no delay\n", rtt);
    }
}

static void *resolve(const char *name)
{
    pthread_once(&once, setup);
    return real_library ? dlsym(real_library, name) : dlsym(RTLD_NEXT, name);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pause_half_rtt(void)
{
    if (half_rtt_ns <= 0)
        return;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += half_rtt_ns / 1000000000LL;
    until.tv_nsec += half_rtt_ns % 1000000000LL;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec += 1;
        until.tv_nsec -= 1000000000L;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR)
        ;
}

struct call {
    const char *name;
    int outer;
    int local;
    double start;
};

static void enter(struct call *c, const char *name, int local)
{
    pthread_once(&once, setup);
    c->name = name;
    c->local = local;
    c->outer = depth++ == 0;
    c->start = now();
    if (c->outer && !local)
        pause_half_rtt();
}

/* `disposition`: what SCardDisconnect/EndTransaction/Reconnect do with the card, -1 for other calls */
static LONG leave_with(struct call *c, LONG rc, unsigned long sent, unsigned long received, long disposition)
{
    if (c->outer && !c->local)
        pause_half_rtt();
    depth--;
    if (c->outer && log_fd >= 0) {
        int saved = errno;
        char line[256];
        char extra[40] = "";
        if (disposition >= 0)
            snprintf(extra, sizeof extra, ",\"disposition\":%ld", disposition);
        int n = snprintf(line, sizeof line,
                         "{\"call\":\"%s\",\"rc\":%ld,\"sent\":%lu,\"received\":%lu,"
                         "\"start\":%.6f,\"end\":%.6f,\"pid\":%d%s%s}\n",
                         c->name, (long)(unsigned int)rc, sent, received, c->start, now(), (int)getpid(),
                         extra, c->local ? ",\"local\":true" : "");
        if (n > 0 && (size_t)n < sizeof line && write(log_fd, line, (size_t)n) != n)
            fprintf(stderr, "scardtrace: short write to the call log\n");
        errno = saved;
    }
    return rc;
}

static LONG leave(struct call *c, LONG rc, unsigned long sent, unsigned long received)
{
    return leave_with(c, rc, sent, received, -1);
}

#define FORWARD(name, local, ...)                                       \
    struct call c;                                                      \
    enter(&c, #name, local);                                            \
    __typeof__(name) *real = (__typeof__(name) *)resolve(#name);        \
    LONG rc = real ? real(__VA_ARGS__) : SCARD_F_INTERNAL_ERROR

static unsigned long length_out(LPDWORD length, LONG rc)
{
    return rc == SCARD_S_SUCCESS && length ? (unsigned long)*length : 0;
}

LONG SCardEstablishContext(DWORD dwScope, LPCVOID pvReserved1, LPCVOID pvReserved2, LPSCARDCONTEXT phContext)
{
    FORWARD(SCardEstablishContext, 0, dwScope, pvReserved1, pvReserved2, phContext);
    return leave(&c, rc, 0, 0);
}

LONG SCardReleaseContext(SCARDCONTEXT hContext)
{
    FORWARD(SCardReleaseContext, 0, hContext);
    return leave(&c, rc, 0, 0);
}

LONG SCardIsValidContext(SCARDCONTEXT hContext)
{
    FORWARD(SCardIsValidContext, 0, hContext);
    return leave(&c, rc, 0, 0);
}

LONG SCardConnect(SCARDCONTEXT hContext, LPCSTR szReader, DWORD dwShareMode, DWORD dwPreferredProtocols,
                  LPSCARDHANDLE phCard, LPDWORD pdwActiveProtocol)
{
    FORWARD(SCardConnect, 0, hContext, szReader, dwShareMode, dwPreferredProtocols, phCard, pdwActiveProtocol);
    return leave(&c, rc, szReader ? strlen(szReader) + 1 : 0, 0);
}

LONG SCardReconnect(SCARDHANDLE hCard, DWORD dwShareMode, DWORD dwPreferredProtocols, DWORD dwInitialization,
                    LPDWORD pdwActiveProtocol)
{
    FORWARD(SCardReconnect, 0, hCard, dwShareMode, dwPreferredProtocols, dwInitialization, pdwActiveProtocol);
    return leave_with(&c, rc, 0, 0, (long)dwInitialization);
}

LONG SCardDisconnect(SCARDHANDLE hCard, DWORD dwDisposition)
{
    FORWARD(SCardDisconnect, 0, hCard, dwDisposition);
    return leave_with(&c, rc, 0, 0, (long)dwDisposition);
}

LONG SCardBeginTransaction(SCARDHANDLE hCard)
{
    FORWARD(SCardBeginTransaction, 0, hCard);
    return leave(&c, rc, 0, 0);
}

LONG SCardEndTransaction(SCARDHANDLE hCard, DWORD dwDisposition)
{
    FORWARD(SCardEndTransaction, 0, hCard, dwDisposition);
    return leave_with(&c, rc, 0, 0, (long)dwDisposition);
}

LONG SCardStatus(SCARDHANDLE hCard, LPSTR mszReaderName, LPDWORD pcchReaderLen, LPDWORD pdwState,
                 LPDWORD pdwProtocol, LPBYTE pbAtr, LPDWORD pcbAtrLen)
{
    FORWARD(SCardStatus, 0, hCard, mszReaderName, pcchReaderLen, pdwState, pdwProtocol, pbAtr, pcbAtrLen);
    return leave(&c, rc, 0, length_out(pcchReaderLen, rc) + length_out(pcbAtrLen, rc));
}

LONG SCardGetStatusChange(SCARDCONTEXT hContext, DWORD dwTimeout, SCARD_READERSTATE *rgReaderStates,
                          DWORD cReaders)
{
    unsigned long names = 0;
    for (DWORD i = 0; rgReaderStates && i < cReaders; i++)
        names += rgReaderStates[i].szReader ? strlen(rgReaderStates[i].szReader) + 1 : 0;
    FORWARD(SCardGetStatusChange, 0, hContext, dwTimeout, rgReaderStates, cReaders);
    unsigned long atrs = 0;
    for (DWORD i = 0; rc == SCARD_S_SUCCESS && rgReaderStates && i < cReaders; i++)
        atrs += rgReaderStates[i].cbAtr;
    return leave(&c, rc, names, atrs);
}

LONG SCardControl(SCARDHANDLE hCard, DWORD dwControlCode, LPCVOID pbSendBuffer, DWORD cbSendLength,
                  LPVOID pbRecvBuffer, DWORD cbRecvLength, LPDWORD lpBytesReturned)
{
    FORWARD(SCardControl, 0, hCard, dwControlCode, pbSendBuffer, cbSendLength, pbRecvBuffer, cbRecvLength,
            lpBytesReturned);
    return leave(&c, rc, cbSendLength, length_out(lpBytesReturned, rc));
}

LONG SCardTransmit(SCARDHANDLE hCard, const SCARD_IO_REQUEST *pioSendPci, LPCBYTE pbSendBuffer,
                   DWORD cbSendLength, SCARD_IO_REQUEST *pioRecvPci, LPBYTE pbRecvBuffer, LPDWORD pcbRecvLength)
{
    FORWARD(SCardTransmit, 0, hCard, pioSendPci, pbSendBuffer, cbSendLength, pioRecvPci, pbRecvBuffer,
            pcbRecvLength);
    return leave(&c, rc, cbSendLength, length_out(pcbRecvLength, rc));
}

LONG SCardListReaderGroups(SCARDCONTEXT hContext, LPSTR mszGroups, LPDWORD pcchGroups)
{
    FORWARD(SCardListReaderGroups, 0, hContext, mszGroups, pcchGroups);
    return leave(&c, rc, 0, length_out(pcchGroups, rc));
}

LONG SCardListReaders(SCARDCONTEXT hContext, LPCSTR mszGroups, LPSTR mszReaders, LPDWORD pcchReaders)
{
    FORWARD(SCardListReaders, 0, hContext, mszGroups, mszReaders, pcchReaders);
    return leave(&c, rc, 0, length_out(pcchReaders, rc));
}

LONG SCardFreeMemory(SCARDCONTEXT hContext, LPCVOID pvMem)
{
    FORWARD(SCardFreeMemory, 1, hContext, pvMem);
    return leave(&c, rc, 0, 0);
}

LONG SCardCancel(SCARDCONTEXT hContext)
{
    FORWARD(SCardCancel, 0, hContext);
    return leave(&c, rc, 0, 0);
}

LONG SCardGetAttrib(SCARDHANDLE hCard, DWORD dwAttrId, LPBYTE pbAttr, LPDWORD pcbAttrLen)
{
    FORWARD(SCardGetAttrib, 0, hCard, dwAttrId, pbAttr, pcbAttrLen);
    return leave(&c, rc, 0, length_out(pcbAttrLen, rc));
}

LONG SCardSetAttrib(SCARDHANDLE hCard, DWORD dwAttrId, LPCBYTE pbAttr, DWORD cbAttrLen)
{
    FORWARD(SCardSetAttrib, 0, hCard, dwAttrId, pbAttr, cbAttrLen);
    return leave(&c, rc, cbAttrLen, 0);
}

const char *pcsc_stringify_error(const LONG code)
{
    const char *(*real)(const LONG) = (const char *(*)(const LONG))resolve("pcsc_stringify_error");
    return real ? real(code) : "unknown PC/SC error (scardtrace found no real library)";
}
