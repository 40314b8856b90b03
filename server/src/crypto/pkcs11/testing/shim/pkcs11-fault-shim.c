/*
 * A PKCS#11 library for tests (issue 22, module loss): it forwards every call to a real PKCS#11
 * library (SoftHSM2) and, on command, makes chosen calls fail with chosen CKR codes, or closes
 * every session of the real library the way a restarting HSM loses them.
 *
 * Environment (read by C_GetFunctionList):
 *   INKAN_SHIM_LIBRARY  the real library (default /usr/lib/softhsm/libsofthsm2.so)
 *   INKAN_SHIM_CONTROL  the control file, read again on every call (absent: no fault)
 *
 * CKR names the shim knows are listed in ckr_names (fault-shim.ts refuses others); a number works too.
 * Control file: one directive a line (write it atomically: a new file renamed over the old one).
 *   fail <CKR_NAME | number> <C_Function ...>   those calls return the code without reaching the
 *                                               real library; "*" means every call this shim wraps,
 *                                               and C_SignInit@0x1041 only a C_*Init with that
 *                                               mechanism (here CKM_ECDSA)
 *   drop-sessions <id>                          once per new id: close every session of the real
 *                                               library (C_CloseAllSessions on each slot), after
 *                                               the calls in flight have returned; the application's
 *                                               session handles go stale and its login ends
 * Calls not wrapped here (C_Finalize, C_GetInfo, and those the SAM never makes) go straight through.
 *
 * Build: gcc -shared -fPIC -O2 -I <pkcs11js>/includes/pkcs11 -o libpkcs11-fault-shim.so \
 *        pkcs11-fault-shim.c -ldl -lpthread
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CK_PTR *
#define CK_DECLARE_FUNCTION(returnType, name) returnType name
#define CK_DECLARE_FUNCTION_POINTER(returnType, name) returnType(*name)
#define CK_CALLBACK_FUNCTION(returnType, name) returnType(*name)
#ifndef NULL_PTR
#define NULL_PTR 0
#endif
#include "pkcs11.h"

#define EXPORT __attribute__((visibility("default")))

static void *real_handle;
static CK_FUNCTION_LIST_PTR real;
static CK_FUNCTION_LIST shim_list;
static const char *control_path;
static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
/* Forwarded calls hold it shared; dropping the sessions holds it exclusively (writer preferred). */
static pthread_rwlock_t call_lock;
static long dropped_id = -1;

static const struct {
  const char *name;
  CK_RV rv;
} ckr_names[] = {
    {"CKR_GENERAL_ERROR", CKR_GENERAL_ERROR},
    {"CKR_FUNCTION_FAILED", CKR_FUNCTION_FAILED},
    {"CKR_DEVICE_ERROR", CKR_DEVICE_ERROR},
    {"CKR_DEVICE_MEMORY", CKR_DEVICE_MEMORY},
    {"CKR_DEVICE_REMOVED", CKR_DEVICE_REMOVED},
    {"CKR_SESSION_CLOSED", CKR_SESSION_CLOSED},
    {"CKR_SESSION_HANDLE_INVALID", CKR_SESSION_HANDLE_INVALID},
    {"CKR_TOKEN_NOT_PRESENT", CKR_TOKEN_NOT_PRESENT},
    {"CKR_USER_NOT_LOGGED_IN", CKR_USER_NOT_LOGGED_IN},
    {"CKR_PIN_INCORRECT", CKR_PIN_INCORRECT},
    {"CKR_PIN_LOCKED", CKR_PIN_LOCKED},
    {"CKR_CRYPTOKI_NOT_INITIALIZED", CKR_CRYPTOKI_NOT_INITIALIZED},
};

static CK_RV parse_rv(const char *word) {
  for (size_t i = 0; i < sizeof ckr_names / sizeof ckr_names[0]; i++) {
    if (strcmp(word, ckr_names[i].name) == 0) return ckr_names[i].rv;
  }
  char *end;
  unsigned long value = strtoul(word, &end, 0);
  return (*end == '\0' && value != 0) ? (CK_RV)value : CKR_GENERAL_ERROR;
}

/* Closes every session of the real library; no forwarded call is in flight meanwhile. */
static void drop_all_sessions(void) {
  pthread_rwlock_wrlock(&call_lock);
  CK_ULONG count = 0;
  if (real->C_GetSlotList(CK_FALSE, NULL_PTR, &count) == CKR_OK && count > 0) {
    CK_SLOT_ID *slots = calloc(count, sizeof(CK_SLOT_ID));
    if (slots && real->C_GetSlotList(CK_FALSE, slots, &count) == CKR_OK) {
      for (CK_ULONG i = 0; i < count; i++) real->C_CloseAllSessions(slots[i]);
    }
    free(slots);
  }
  pthread_rwlock_unlock(&call_lock);
}

#define NO_MECHANISM ((CK_MECHANISM_TYPE)-1)

/* "*", "C_Name", or "C_Name@mechanism" for a C_*Init with that mechanism. */
static int matches(const char *pattern, const char *function, CK_MECHANISM_TYPE mechanism) {
  if (strcmp(pattern, "*") == 0) return 1;
  const char *at = strchr(pattern, '@');
  if (!at) return strcmp(pattern, function) == 0;
  size_t length = (size_t)(at - pattern);
  if (length != strlen(function) || strncmp(pattern, function, length) != 0) return 0;
  return mechanism != NO_MECHANISM && strtoul(at + 1, NULL, 0) == mechanism;
}

/* The code `function` must fail with now (CKR_OK: forward it); acts on a new drop-sessions id. */
static CK_RV fault_for(const char *function, CK_MECHANISM_TYPE mechanism) {
  if (!control_path) return CKR_OK;
  FILE *f = fopen(control_path, "r");
  if (!f) return CKR_OK;
  CK_RV result = CKR_OK;
  long drop = -1;
  char line[1024];
  while (fgets(line, sizeof line, f)) {
    char *save = NULL;
    char *verb = strtok_r(line, " \t\r\n", &save);
    if (!verb) continue;
    if (strcmp(verb, "drop-sessions") == 0) {
      char *id = strtok_r(NULL, " \t\r\n", &save);
      if (id) drop = strtol(id, NULL, 10);
    } else if (strcmp(verb, "fail") == 0 && result == CKR_OK) {
      char *code = strtok_r(NULL, " \t\r\n", &save);
      if (!code) continue;
      for (char *name = strtok_r(NULL, " \t\r\n", &save); name; name = strtok_r(NULL, " \t\r\n", &save)) {
        if (matches(name, function, mechanism)) {
          result = parse_rv(code);
          break;
        }
      }
    }
  }
  fclose(f);
  if (drop >= 0) {
    pthread_mutex_lock(&state_lock);
    int act = drop != dropped_id;
    dropped_id = drop;
    pthread_mutex_unlock(&state_lock);
    if (act) drop_all_sessions();
  }
  return result;
}

/* A wrapper: the commanded fault, or the real function under the shared call lock. */
#define WRAP_MECHANISM(name, params, args, mechanism) \
  static CK_RV shim_##name params {                   \
    CK_RV fault = fault_for(#name, mechanism);        \
    if (fault != CKR_OK) return fault;                \
    pthread_rwlock_rdlock(&call_lock);                \
    CK_RV rv = real->name args;                       \
    pthread_rwlock_unlock(&call_lock);                \
    return rv;                                        \
  }
#define WRAP(name, params, args) WRAP_MECHANISM(name, params, args, NO_MECHANISM)
#define MECHANISM_OF(m) ((m) ? (m)->mechanism : NO_MECHANISM)

WRAP(C_Initialize, (CK_VOID_PTR a), (a))
WRAP(C_GetSlotList, (CK_BBOOL a, CK_SLOT_ID_PTR b, CK_ULONG_PTR c), (a, b, c))
WRAP(C_GetSlotInfo, (CK_SLOT_ID a, CK_SLOT_INFO_PTR b), (a, b))
WRAP(C_GetTokenInfo, (CK_SLOT_ID a, CK_TOKEN_INFO_PTR b), (a, b))
WRAP(C_InitToken, (CK_SLOT_ID a, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d), (a, b, c, d))
WRAP(C_InitPIN, (CK_SESSION_HANDLE a, CK_UTF8CHAR_PTR b, CK_ULONG c), (a, b, c))
WRAP(C_OpenSession, (CK_SLOT_ID a, CK_FLAGS b, CK_VOID_PTR c, CK_NOTIFY d, CK_SESSION_HANDLE_PTR e), (a, b, c, d, e))
WRAP(C_CloseSession, (CK_SESSION_HANDLE a), (a))
WRAP(C_GetSessionInfo, (CK_SESSION_HANDLE a, CK_SESSION_INFO_PTR b), (a, b))
WRAP(C_Login, (CK_SESSION_HANDLE a, CK_USER_TYPE b, CK_UTF8CHAR_PTR c, CK_ULONG d), (a, b, c, d))
WRAP(C_Logout, (CK_SESSION_HANDLE a), (a))
WRAP(C_CreateObject, (CK_SESSION_HANDLE a, CK_ATTRIBUTE_PTR b, CK_ULONG c, CK_OBJECT_HANDLE_PTR d), (a, b, c, d))
WRAP(C_DestroyObject, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b), (a, b))
WRAP(C_GetAttributeValue, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d), (a, b, c, d))
WRAP(C_FindObjectsInit, (CK_SESSION_HANDLE a, CK_ATTRIBUTE_PTR b, CK_ULONG c), (a, b, c))
WRAP(C_FindObjects, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE_PTR b, CK_ULONG c, CK_ULONG_PTR d), (a, b, c, d))
WRAP(C_FindObjectsFinal, (CK_SESSION_HANDLE a), (a))
WRAP_MECHANISM(C_EncryptInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c), (a, b, c), MECHANISM_OF(b))
WRAP(C_Encrypt, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e), (a, b, c, d, e))
WRAP(C_EncryptFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c), (a, b, c))
WRAP_MECHANISM(C_DecryptInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c), (a, b, c), MECHANISM_OF(b))
WRAP(C_Decrypt, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e), (a, b, c, d, e))
WRAP_MECHANISM(C_SignInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c), (a, b, c), MECHANISM_OF(b))
WRAP(C_Sign, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e), (a, b, c, d, e))
WRAP(C_SignUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c), (a, b, c))
WRAP(C_SignFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c), (a, b, c))
WRAP_MECHANISM(C_VerifyInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c), (a, b, c), MECHANISM_OF(b))
WRAP(C_Verify, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG e), (a, b, c, d, e))
WRAP(C_GenerateKey, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_ATTRIBUTE_PTR c, CK_ULONG d, CK_OBJECT_HANDLE_PTR e), (a, b, c, d, e))
WRAP(C_GenerateKeyPair,
     (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_ATTRIBUTE_PTR c, CK_ULONG d, CK_ATTRIBUTE_PTR e, CK_ULONG f, CK_OBJECT_HANDLE_PTR g, CK_OBJECT_HANDLE_PTR h),
     (a, b, c, d, e, f, g, h))
WRAP(C_WrapKey, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_OBJECT_HANDLE d, CK_BYTE_PTR e, CK_ULONG_PTR f), (a, b, c, d, e, f))
WRAP(C_UnwrapKey,
     (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_BYTE_PTR d, CK_ULONG e, CK_ATTRIBUTE_PTR f, CK_ULONG g, CK_OBJECT_HANDLE_PTR h),
     (a, b, c, d, e, f, g, h))
WRAP(C_DeriveKey, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_ATTRIBUTE_PTR d, CK_ULONG e, CK_OBJECT_HANDLE_PTR f), (a, b, c, d, e, f))
WRAP(C_GenerateRandom, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c), (a, b, c))

EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
  if (!list) return CKR_ARGUMENTS_BAD;
  if (!real) {
    const char *path = getenv("INKAN_SHIM_LIBRARY");
    real_handle = dlopen(path && *path ? path : "/usr/lib/softhsm/libsofthsm2.so", RTLD_NOW | RTLD_LOCAL);
    if (!real_handle) return CKR_GENERAL_ERROR;
    CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(real_handle, "C_GetFunctionList");
    if (!get || get(&real) != CKR_OK || !real) return CKR_GENERAL_ERROR;
    const char *control = getenv("INKAN_SHIM_CONTROL");
    control_path = control && *control ? strdup(control) : NULL;
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&call_lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    shim_list = *real; /* everything not wrapped below goes straight to the real library */
    shim_list.C_GetFunctionList = C_GetFunctionList;
#define USE(name) shim_list.name = shim_##name
    USE(C_Initialize); USE(C_GetSlotList); USE(C_GetSlotInfo); USE(C_GetTokenInfo); USE(C_InitToken);
    USE(C_InitPIN); USE(C_OpenSession); USE(C_CloseSession); USE(C_GetSessionInfo); USE(C_Login);
    USE(C_Logout); USE(C_CreateObject); USE(C_DestroyObject); USE(C_GetAttributeValue);
    USE(C_FindObjectsInit); USE(C_FindObjects); USE(C_FindObjectsFinal); USE(C_EncryptInit);
    USE(C_Encrypt); USE(C_EncryptFinal); USE(C_DecryptInit); USE(C_Decrypt); USE(C_SignInit);
    USE(C_Sign); USE(C_SignUpdate); USE(C_SignFinal); USE(C_VerifyInit); USE(C_Verify);
    USE(C_GenerateKey); USE(C_GenerateKeyPair); USE(C_WrapKey); USE(C_UnwrapKey); USE(C_DeriveKey);
    USE(C_GenerateRandom);
#undef USE
  }
  *list = &shim_list;
  return CKR_OK;
}

__attribute__((destructor)) static void unload(void) {
  if (real_handle) dlclose(real_handle);
}
