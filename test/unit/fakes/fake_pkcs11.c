/*
 * A PKCS#11 module in software for unit tests (fake_pkcs11.h).  It keeps to
 * the PKCS#11 2.40 rules the backend relies on (private objects hidden
 * before login, sensitive attributes unreadable, the length query of
 * C_GetAttributeValue, CKR_USER_ALREADY_LOGGED_IN, sessions closed by
 * C_Finalize) and does the cryptography with OpenSSL (fake_pkcs11_keys.c).
 */
#include "fake_pkcs11.h"
#include "fake_pkcs11_internal.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rand.h>

#define MAX_OBJS 64
#define MAX_SESSIONS 32
#define MAX_TEMPLATES 16

typedef struct {
    int open;
    CK_OBJECT_HANDLE found[MAX_OBJS];
    CK_ULONG n_found, pos;
    int finding;
    enum { OP_NONE, OP_SIGN, OP_DECRYPT } op;
    CK_OBJECT_HANDLE op_key;
} SESSION;

static CK_FUNCTION_LIST fl;
static FAKE_OBJ objs[MAX_OBJS];        /* handle = index + 1 */
static SESSION sessions[MAX_SESSIONS]; /* handle = index + 1 */
static int initialized, logged_in;
static CK_FLAGS token_flags;
static CK_MECHANISM_TYPE mechs[32];
static size_t n_mechs;
static unsigned long calls[FAKE_N_FUNCS];
static struct {
    unsigned long from, to;
    CK_RV rv;
} script[FAKE_N_FUNCS];
/* The last operation's mechanism, its parameters and their inner buffers copied. */
static CK_MECHANISM last_mech;
static unsigned char last_param[256], last_inner[256];
static unsigned char last_input[1024];
static size_t last_input_len;
static FAKE_P11_TEMPLATE templates[MAX_TEMPLATES];
static size_t n_templates;
static int like_softhsm;

/*
 * The module's own OpenSSL use: a module that cleans up pops what its
 * failures left in the thread's error queue; SoftHSM leaves it there.
 */
static void crypto_begin(void)
{
    ERR_set_mark();
}

static void crypto_end(void)
{
    if (like_softhsm)
        ERR_clear_last_mark();
    else
        ERR_pop_to_mark();
}

static const CK_MECHANISM_TYPE all_mechs[] = {
    CKM_RSA_PKCS_KEY_PAIR_GEN,
    CKM_RSA_PKCS,
    CKM_RSA_X_509,
    CKM_RSA_PKCS_OAEP,
    CKM_RSA_PKCS_PSS,
    CKM_EC_KEY_PAIR_GEN,
    CKM_ECDSA,
    CKM_ECDH1_DERIVE,
    CKM_EC_EDWARDS_KEY_PAIR_GEN,
    CKM_EDDSA,
};

static CK_RV scripted(FAKE_P11_FN fn)
{
    unsigned long n = ++calls[fn];

    if (script[fn].rv != CKR_OK && n >= script[fn].from && n <= script[fn].to)
        return script[fn].rv;
    if (!initialized && fn != FAKE_C_Initialize)
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    return CKR_OK;
}

static void mech_record(const CK_MECHANISM *m);

/* --- objects ----------------------------------------------------------------- */

static FAKE_OBJ *obj_of(CK_OBJECT_HANDLE h)
{
    return h >= 1 && h <= MAX_OBJS && objs[h - 1].used ? &objs[h - 1] : NULL;
}

FAKE_ATTR *fake_attr_find(FAKE_OBJ *o, CK_ATTRIBUTE_TYPE type)
{
    for (size_t i = 0; i < o->n; i++)
        if (o->attrs[i].type == type)
            return &o->attrs[i];
    return NULL;
}

void fake_attr_set(FAKE_OBJ *o, CK_ATTRIBUTE_TYPE type, const void *val, size_t len)
{
    FAKE_ATTR *a = fake_attr_find(o, type);

    if (a == NULL) {
        if (o->n == FAKE_P11_MAX_ATTRS)
            return;
        a = &o->attrs[o->n++];
        a->type = type;
    } else {
        OPENSSL_clear_free(a->val, a->len);
    }
    a->val = OPENSSL_memdup(val, len > 0 ? len : 1);
    a->len = (CK_ULONG)len;
}

void fake_attr_set_default(FAKE_OBJ *o, CK_ATTRIBUTE_TYPE type, const void *val, size_t len)
{
    if (fake_attr_find(o, type) == NULL)
        fake_attr_set(o, type, val, len);
}

int fake_attr_true(FAKE_OBJ *o, CK_ATTRIBUTE_TYPE type)
{
    FAKE_ATTR *a = fake_attr_find(o, type);

    return a != NULL && a->len == sizeof(CK_BBOOL) && *(CK_BBOOL *)a->val == CK_TRUE;
}

CK_ULONG fake_attr_ulong(FAKE_OBJ *o, CK_ATTRIBUTE_TYPE type, CK_ULONG dflt)
{
    FAKE_ATTR *a = fake_attr_find(o, type);

    return a != NULL && a->len == sizeof(CK_ULONG) ? *(CK_ULONG *)a->val : dflt;
}

static FAKE_OBJ *obj_new(CK_OBJECT_HANDLE *h)
{
    for (size_t i = 0; i < MAX_OBJS; i++) {
        if (!objs[i].used) {
            memset(&objs[i], 0, sizeof(objs[i]));
            objs[i].used = 1;
            *h = i + 1;
            return &objs[i];
        }
    }
    return NULL;
}

void fake_obj_free(FAKE_OBJ *o)
{
    for (size_t i = 0; i < o->n; i++)
        OPENSSL_clear_free(o->attrs[i].val, o->attrs[i].len);
    EVP_PKEY_free(o->pkey);
    memset(o, 0, sizeof(*o));
}

static void obj_set_template(FAKE_OBJ *o, const CK_ATTRIBUTE *t, CK_ULONG n)
{
    for (CK_ULONG i = 0; i < n; i++)
        fake_attr_set(o, t[i].type, t[i].pValue, t[i].ulValueLen);
}

static void template_record(const CK_ATTRIBUTE *t, CK_ULONG n)
{
    FAKE_P11_TEMPLATE *r;

    if (n_templates == MAX_TEMPLATES)
        return;
    r = &templates[n_templates++];
    r->n = n < FAKE_P11_MAX_ATTRS ? n : FAKE_P11_MAX_ATTRS;
    for (CK_ULONG i = 0; i < r->n; i++) {
        r->attrs[i].type = t[i].type;
        r->attrs[i].ulValueLen = t[i].ulValueLen;
        r->attrs[i].pValue = OPENSSL_memdup(t[i].pValue, t[i].ulValueLen > 0 ? t[i].ulValueLen : 1);
    }
}

/* --- the public API ------------------------------------------------------------------ */

static int mech_listed(CK_MECHANISM_TYPE m)
{
    for (size_t i = 0; i < n_mechs; i++)
        if (mechs[i] == m)
            return 1;
    return 0;
}

void fake_p11_like_softhsm(int on)
{
    like_softhsm = on;
}

void fake_p11_set_token_flags(CK_FLAGS extra)
{
    token_flags = extra;
}

void fake_p11_set_mechanisms(const CK_MECHANISM_TYPE *m, size_t n)
{
    n_mechs = n < 32 ? n : 32;
    memcpy(mechs, m, n_mechs * sizeof(*m));
}

CK_OBJECT_HANDLE fake_p11_add_key(EVP_PKEY *pkey, const char *label, const unsigned char *id,
                                  size_t id_len, int with_pub)
{
    static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_OBJECT_HANDLE hpriv = 0, hpub = 0;
    FAKE_OBJ *o = obj_new(&hpriv), *p;
    int rsa = EVP_PKEY_is_a(pkey, "RSA");

    if (o == NULL)
        return CK_INVALID_HANDLE;
    fake_key_attrs(o, pkey, 0);
    fake_attr_set(o, CKA_TOKEN, &yes, 1);
    fake_attr_set(o, CKA_PRIVATE, &yes, 1);
    fake_attr_set(o, CKA_SENSITIVE, &yes, 1);
    fake_attr_set(o, CKA_EXTRACTABLE, &no, 1);
    fake_attr_set(o, CKA_SIGN, &yes, 1);
    fake_attr_set(o, CKA_DECRYPT, rsa ? &yes : &no, 1);
    fake_attr_set(o, CKA_DERIVE, EVP_PKEY_is_a(pkey, "EC") ? &yes : &no, 1);
    if (label != NULL)
        fake_attr_set(o, CKA_LABEL, label, strlen(label));
    if (id != NULL)
        fake_attr_set(o, CKA_ID, id, id_len);
    EVP_PKEY_up_ref(pkey);
    o->pkey = pkey;
    if (with_pub && (p = obj_new(&hpub)) != NULL) {
        fake_key_attrs(p, pkey, 1);
        fake_attr_set(p, CKA_TOKEN, &yes, 1);
        fake_attr_set(p, CKA_PRIVATE, &no, 1);
        fake_attr_set(p, CKA_VERIFY, &yes, 1);
        if (label != NULL)
            fake_attr_set(p, CKA_LABEL, label, strlen(label));
        if (id != NULL)
            fake_attr_set(p, CKA_ID, id, id_len);
    }
    return hpriv;
}

CK_OBJECT_HANDLE fake_p11_add_cert(const unsigned char *der, size_t len, const char *label,
                                   const unsigned char *id, size_t id_len)
{
    static CK_OBJECT_CLASS klass = CKO_CERTIFICATE;
    static CK_BBOOL no = CK_FALSE;
    CK_OBJECT_HANDLE h = 0;
    FAKE_OBJ *o = obj_new(&h);

    if (o == NULL)
        return CK_INVALID_HANDLE;
    fake_attr_set(o, CKA_CLASS, &klass, sizeof(klass));
    fake_attr_set(o, CKA_PRIVATE, &no, 1);
    fake_attr_set(o, CKA_VALUE, der, len);
    if (label != NULL)
        fake_attr_set(o, CKA_LABEL, label, strlen(label));
    if (id != NULL)
        fake_attr_set(o, CKA_ID, id, id_len);
    return h;
}

void fake_p11_drop_attr(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type)
{
    FAKE_OBJ *o = obj_of(h);
    FAKE_ATTR *a = o != NULL ? fake_attr_find(o, type) : NULL;

    if (a == NULL)
        return;
    OPENSSL_clear_free(a->val, a->len);
    *a = o->attrs[--o->n];
}

size_t fake_p11_object_count(void)
{
    size_t n = 0;

    for (size_t i = 0; i < MAX_OBJS; i++)
        n += objs[i].used;
    return n;
}

const void *fake_p11_attr(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, CK_ULONG *len)
{
    FAKE_OBJ *o = obj_of(h);
    FAKE_ATTR *a = o != NULL ? fake_attr_find(o, type) : NULL;

    if (a == NULL)
        return NULL;
    *len = a->len;
    return a->val;
}

EVP_PKEY *fake_p11_key_of(CK_OBJECT_HANDLE h)
{
    FAKE_OBJ *o = obj_of(h);

    return o != NULL ? o->pkey : NULL;
}

void fake_p11_fail(FAKE_P11_FN fn, unsigned long nth, unsigned long times, CK_RV rv)
{
    script[fn].from = calls[fn] + nth;
    script[fn].to = calls[fn] + nth + times - 1;
    script[fn].rv = rv;
}

unsigned long fake_p11_calls(FAKE_P11_FN fn)
{
    return calls[fn];
}

const CK_MECHANISM *fake_p11_last_mech(void)
{
    return &last_mech;
}

const unsigned char *fake_p11_last_input(size_t *len)
{
    *len = last_input_len;
    return last_input;
}

const FAKE_P11_TEMPLATE *fake_p11_template(size_t i)
{
    return i < n_templates ? &templates[i] : NULL;
}

size_t fake_p11_template_count(void)
{
    return n_templates;
}

const CK_ATTRIBUTE *fake_p11_template_find(const FAKE_P11_TEMPLATE *t, CK_ATTRIBUTE_TYPE type)
{
    for (CK_ULONG i = 0; t != NULL && i < t->n; i++)
        if (t->attrs[i].type == type)
            return &t->attrs[i];
    return NULL;
}

/* --- the module: general, slots, sessions ------------------------------------------- */

static SESSION *session_of(CK_SESSION_HANDLE h)
{
    return h >= 1 && h <= MAX_SESSIONS && sessions[h - 1].open ? &sessions[h - 1] : NULL;
}

static void close_session(SESSION *s)
{
    /* Session objects go with their session: this fake has one session's worth. */
    memset(s, 0, sizeof(*s));
}

static CK_RV f_Initialize(CK_VOID_PTR args)
{
    CK_RV rv = scripted(FAKE_C_Initialize);

    (void)args;
    if (rv != CKR_OK)
        return rv;
    if (initialized)
        return CKR_CRYPTOKI_ALREADY_INITIALIZED;
    initialized = 1;
    return CKR_OK;
}

static CK_RV f_Finalize(CK_VOID_PTR r)
{
    CK_RV rv = scripted(FAKE_C_Finalize);

    (void)r;
    if (rv != CKR_OK)
        return rv;
    for (size_t i = 0; i < MAX_SESSIONS; i++)
        close_session(&sessions[i]);
    logged_in = 0;
    initialized = 0;
    return CKR_OK;
}

static CK_RV f_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR n)
{
    CK_RV rv = scripted(FAKE_C_GetSlotList);

    (void)present;
    if (rv != CKR_OK)
        return rv;
    if (list != NULL && *n < 1) {
        *n = 1;
        return CKR_BUFFER_TOO_SMALL;
    }
    if (list != NULL)
        list[0] = FAKE_P11_SLOT;
    *n = 1;
    return CKR_OK;
}

static void pad(unsigned char *field, size_t n, const char *s)
{
    memset(field, ' ', n);
    memcpy(field, s, strlen(s) < n ? strlen(s) : n);
}

static CK_RV f_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR ti)
{
    CK_RV rv = scripted(FAKE_C_GetTokenInfo);

    if (rv != CKR_OK)
        return rv;
    if (slot != FAKE_P11_SLOT)
        return CKR_SLOT_ID_INVALID;
    memset(ti, 0, sizeof(*ti));
    pad(ti->label, sizeof(ti->label), FAKE_P11_LABEL);
    pad(ti->manufacturerID, sizeof(ti->manufacturerID), "hwkey tests");
    pad(ti->model, sizeof(ti->model), "fake");
    pad(ti->serialNumber, sizeof(ti->serialNumber), "0001");
    ti->flags = CKF_TOKEN_INITIALIZED | CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED | CKF_RNG |
                token_flags;
    ti->ulMaxSessionCount = ti->ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
    ti->ulSessionCount = ti->ulRwSessionCount = CK_UNAVAILABLE_INFORMATION;
    ti->ulMaxPinLen = 64;
    ti->ulMinPinLen = 4;
    return CKR_OK;
}

static CK_RV f_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR n)
{
    CK_RV rv = scripted(FAKE_C_GetMechanismList);

    if (rv != CKR_OK)
        return rv;
    if (slot != FAKE_P11_SLOT)
        return CKR_SLOT_ID_INVALID;
    if (list != NULL && *n < n_mechs) {
        *n = n_mechs;
        return CKR_BUFFER_TOO_SMALL;
    }
    if (list != NULL)
        memcpy(list, mechs, n_mechs * sizeof(*mechs));
    *n = n_mechs;
    return CKR_OK;
}

static CK_RV f_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
                           CK_SESSION_HANDLE_PTR h)
{
    CK_RV rv = scripted(FAKE_C_OpenSession);

    (void)flags;
    (void)app;
    (void)notify;
    if (rv != CKR_OK)
        return rv;
    if (slot != FAKE_P11_SLOT)
        return CKR_SLOT_ID_INVALID;
    for (size_t i = 0; i < MAX_SESSIONS; i++) {
        if (!sessions[i].open) {
            memset(&sessions[i], 0, sizeof(sessions[i]));
            sessions[i].open = 1;
            *h = i + 1;
            return CKR_OK;
        }
    }
    return CKR_SESSION_COUNT;
}

static CK_RV f_CloseSession(CK_SESSION_HANDLE h)
{
    CK_RV rv = scripted(FAKE_C_CloseSession);
    SESSION *s = session_of(h);
    int any = 0;

    if (rv != CKR_OK)
        return rv;
    if (s == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    close_session(s);
    for (size_t i = 0; i < MAX_SESSIONS; i++)
        any |= sessions[i].open;
    if (!any)
        logged_in = 0; /* PKCS#11: the last session closed logs out */
    return CKR_OK;
}

static CK_RV f_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info)
{
    CK_RV rv = scripted(FAKE_C_GetSessionInfo);

    if (rv != CKR_OK)
        return rv;
    if (session_of(h) == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    memset(info, 0, sizeof(*info));
    info->slotID = FAKE_P11_SLOT;
    info->state = logged_in ? CKS_RW_USER_FUNCTIONS : CKS_RW_PUBLIC_SESSION;
    info->flags = CKF_SERIAL_SESSION | CKF_RW_SESSION;
    return CKR_OK;
}

static CK_RV f_Login(CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
    CK_RV rv = scripted(FAKE_C_Login);

    if (rv != CKR_OK)
        return rv;
    if (session_of(h) == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    if (user == CKU_USER && logged_in)
        return CKR_USER_ALREADY_LOGGED_IN;
    if (user != CKU_USER && user != CKU_CONTEXT_SPECIFIC)
        return CKR_USER_TYPE_INVALID;
    if (pin == NULL || len != strlen(FAKE_P11_PIN) || memcmp(pin, FAKE_P11_PIN, len) != 0)
        return CKR_PIN_INCORRECT;
    logged_in = 1;
    return CKR_OK;
}

/* --- objects ------------------------------------------------------------------------ */

static int visible(FAKE_OBJ *o)
{
    return !fake_attr_true(o, CKA_PRIVATE) || logged_in;
}

static int matches(FAKE_OBJ *o, const CK_ATTRIBUTE *t, CK_ULONG n)
{
    for (CK_ULONG i = 0; i < n; i++) {
        FAKE_ATTR *a = fake_attr_find(o, t[i].type);

        if (a == NULL || a->len != t[i].ulValueLen ||
            (a->len > 0 && memcmp(a->val, t[i].pValue, a->len) != 0))
            return 0;
    }
    return 1;
}

static CK_RV f_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
    CK_RV rv = scripted(FAKE_C_FindObjectsInit);
    SESSION *s = session_of(h);

    if (rv != CKR_OK)
        return rv;
    if (s == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    if (s->finding)
        return CKR_OPERATION_ACTIVE;
    s->finding = 1;
    s->n_found = s->pos = 0;
    for (size_t i = 0; i < MAX_OBJS; i++)
        if (objs[i].used && visible(&objs[i]) && matches(&objs[i], t, n))
            s->found[s->n_found++] = i + 1;
    return CKR_OK;
}

static CK_RV f_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR out, CK_ULONG max,
                           CK_ULONG_PTR n)
{
    CK_RV rv = scripted(FAKE_C_FindObjects);
    SESSION *s = session_of(h);

    if (rv != CKR_OK)
        return rv;
    if (s == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    if (!s->finding)
        return CKR_OPERATION_NOT_INITIALIZED;
    for (*n = 0; *n < max && s->pos < s->n_found; (*n)++)
        out[*n] = s->found[s->pos++];
    return CKR_OK;
}

static CK_RV f_FindObjectsFinal(CK_SESSION_HANDLE h)
{
    CK_RV rv = scripted(FAKE_C_FindObjectsFinal);
    SESSION *s = session_of(h);

    if (rv != CKR_OK)
        return rv;
    if (s == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    s->finding = 0;
    return CKR_OK;
}

static int sensitive_attr(CK_ATTRIBUTE_TYPE type)
{
    return type == CKA_VALUE || type == CKA_PRIVATE_EXPONENT || type == CKA_PRIME_1 ||
           type == CKA_PRIME_2 || type == CKA_EXPONENT_1 || type == CKA_EXPONENT_2 ||
           type == CKA_COEFFICIENT;
}

static CK_RV f_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR t,
                                 CK_ULONG n)
{
    CK_RV rv = scripted(FAKE_C_GetAttributeValue);
    FAKE_OBJ *o = obj_of(obj);
    CK_RV result = CKR_OK;

    if (rv != CKR_OK)
        return rv;
    if (session_of(h) == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    if (o == NULL || !visible(o))
        return CKR_OBJECT_HANDLE_INVALID;
    for (CK_ULONG i = 0; i < n; i++) {
        FAKE_ATTR *a = fake_attr_find(o, t[i].type);

        if (a != NULL && sensitive_attr(a->type) && fake_attr_true(o, CKA_SENSITIVE)) {
            t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
            result = CKR_ATTRIBUTE_SENSITIVE;
        } else if (a == NULL) {
            t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
            result = CKR_ATTRIBUTE_TYPE_INVALID;
        } else if (t[i].pValue == NULL) {
            t[i].ulValueLen = a->len;
        } else if (t[i].ulValueLen < a->len) {
            t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
            result = CKR_BUFFER_TOO_SMALL;
        } else {
            memcpy(t[i].pValue, a->val, a->len);
            t[i].ulValueLen = a->len;
        }
    }
    return result;
}

static CK_RV f_CreateObject(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                            CK_OBJECT_HANDLE_PTR out)
{
    CK_RV rv = scripted(FAKE_C_CreateObject);
    FAKE_OBJ *o;

    if (rv != CKR_OK)
        return rv;
    if (session_of(h) == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    template_record(t, n);
    if ((o = obj_new(out)) == NULL)
        return CKR_DEVICE_MEMORY;
    obj_set_template(o, t, n);
    if (fake_attr_true(o, CKA_PRIVATE) && !logged_in) {
        fake_obj_free(o);
        return CKR_USER_NOT_LOGGED_IN;
    }
    if (fake_attr_ulong(o, CKA_CLASS, (CK_ULONG)-1) == CKO_PRIVATE_KEY) {
        crypto_begin();
        o->pkey = fake_key_from_attrs(o);
        crypto_end();
        if (o->pkey == NULL) {
            fake_obj_free(o);
            return CKR_TEMPLATE_INCONSISTENT;
        }
    }
    return CKR_OK;
}

static CK_RV f_DestroyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj)
{
    CK_RV rv = scripted(FAKE_C_DestroyObject);
    FAKE_OBJ *o = obj_of(obj);

    if (rv != CKR_OK)
        return rv;
    if (session_of(h) == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    if (o == NULL)
        return CKR_OBJECT_HANDLE_INVALID;
    fake_obj_free(o);
    return CKR_OK;
}

static CK_RV f_GenerateKeyPair(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pubt,
                               CK_ULONG npub, CK_ATTRIBUTE_PTR privt, CK_ULONG npriv,
                               CK_OBJECT_HANDLE_PTR hpub, CK_OBJECT_HANDLE_PTR hpriv)
{
    CK_RV rv = scripted(FAKE_C_GenerateKeyPair);
    EVP_PKEY *pkey = NULL;
    FAKE_OBJ tmp = {0}, *pub, *priv;
    FAKE_ATTR *a;

    if (rv != CKR_OK)
        return rv;
    if (session_of(h) == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    template_record(pubt, npub);
    template_record(privt, npriv);
    mech_record(m);
    if (!mech_listed(m->mechanism))
        return CKR_MECHANISM_INVALID;
    obj_set_template(&tmp, pubt, npub);
    crypto_begin();
    if (m->mechanism == CKM_RSA_PKCS_KEY_PAIR_GEN)
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA",
                                 (size_t)fake_attr_ulong(&tmp, CKA_MODULUS_BITS, 2048));
    else if (m->mechanism == CKM_EC_KEY_PAIR_GEN &&
             (a = fake_attr_find(&tmp, CKA_EC_PARAMS)) != NULL)
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", OBJ_nid2sn(fake_curve_nid(a->val, a->len)));
    else if (m->mechanism == CKM_EC_EDWARDS_KEY_PAIR_GEN)
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    crypto_end();
    fake_obj_free(&tmp);
    if (pkey == NULL)
        return CKR_TEMPLATE_INCONSISTENT;
    if ((pub = obj_new(hpub)) == NULL || (priv = obj_new(hpriv)) == NULL) {
        if (pub != NULL)
            fake_obj_free(pub);
        EVP_PKEY_free(pkey);
        return CKR_DEVICE_MEMORY;
    }
    obj_set_template(pub, pubt, npub);
    obj_set_template(priv, privt, npriv);
    fake_key_attrs(pub, pkey, 1);
    fake_key_attrs(priv, pkey, 0);
    priv->pkey = pkey;
    return CKR_OK;
}

/* --- operations --------------------------------------------------------------------- */

/* Copies m and the buffers its parameters point at, for fake_p11_last_mech(). */
static void mech_record(const CK_MECHANISM *m)
{
    last_mech = *m;
    last_mech.pParameter = NULL;
    if (m->pParameter == NULL || m->ulParameterLen > sizeof(last_param))
        return;
    memcpy(last_param, m->pParameter, m->ulParameterLen);
    last_mech.pParameter = last_param;
    if (m->mechanism == CKM_RSA_PKCS_OAEP) {
        CK_RSA_PKCS_OAEP_PARAMS *p = (CK_RSA_PKCS_OAEP_PARAMS *)last_param;

        if (p->pSourceData != NULL && p->ulSourceDataLen <= sizeof(last_inner)) {
            memcpy(last_inner, p->pSourceData, p->ulSourceDataLen);
            p->pSourceData = last_inner;
        }
    } else if (m->mechanism == CKM_ECDH1_DERIVE) {
        CK_ECDH1_DERIVE_PARAMS *p = (CK_ECDH1_DERIVE_PARAMS *)last_param;

        if (p->pPublicData != NULL && p->ulPublicDataLen <= sizeof(last_inner)) {
            memcpy(last_inner, p->pPublicData, p->ulPublicDataLen);
            p->pPublicData = last_inner;
        }
    }
}

static CK_RV op_init(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key, int op,
                     CK_ATTRIBUTE_TYPE allowed)
{
    SESSION *s = session_of(h);
    FAKE_OBJ *o = obj_of(key);

    if (s == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    if (s->op != OP_NONE)
        return CKR_OPERATION_ACTIVE;
    if (o == NULL || !visible(o) || o->pkey == NULL)
        return CKR_KEY_HANDLE_INVALID;
    if (!mech_listed(m->mechanism))
        return CKR_MECHANISM_INVALID;
    if (!fake_attr_true(o, allowed))
        return CKR_KEY_FUNCTION_NOT_PERMITTED;
    mech_record(m);
    s->op = op;
    s->op_key = key;
    return CKR_OK;
}

static CK_RV f_SignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
    CK_RV rv = scripted(FAKE_C_SignInit);

    return rv != CKR_OK ? rv : op_init(h, m, key, OP_SIGN, CKA_SIGN);
}

static CK_RV f_DecryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
    CK_RV rv = scripted(FAKE_C_DecryptInit);

    return rv != CKR_OK ? rv : op_init(h, m, key, OP_DECRYPT, CKA_DECRYPT);
}

static CK_RV finish(SESSION *s, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                    CK_ULONG_PTR outlen)
{
    FAKE_OBJ *o = obj_of(s->op_key);
    size_t n = *outlen;
    int ok = 0;

    if (o == NULL) {
        s->op = OP_NONE;
        return CKR_KEY_HANDLE_INVALID;
    }
    if (out == NULL) {
        *outlen = (CK_ULONG)EVP_PKEY_get_size(o->pkey) * 2;
        return CKR_OK;
    }
    last_input_len = inlen < sizeof(last_input) ? inlen : sizeof(last_input);
    memcpy(last_input, in, last_input_len);
    crypto_begin();
    switch (last_mech.mechanism) {
    case CKM_ECDSA:
        ok = fake_ecdsa_raw(o->pkey, in, inlen, out, &n);
        break;
    case CKM_EDDSA: {
        EVP_MD_CTX *md = EVP_MD_CTX_new();

        ok = md != NULL && EVP_DigestSignInit(md, NULL, NULL, NULL, o->pkey) > 0 &&
             EVP_DigestSign(md, out, &n, in, inlen) > 0;
        EVP_MD_CTX_free(md);
        break;
    }
    default:
        ok = fake_rsa_op(o->pkey, &last_mech, s->op == OP_DECRYPT, in, inlen, out, &n);
        break;
    }
    crypto_end();
    s->op = OP_NONE;
    /* f_Decrypt turns this into CKR_ENCRYPTED_DATA_INVALID (SoftHSM: CKR_GENERAL_ERROR). */
    if (!ok)
        return CKR_FUNCTION_FAILED;
    *outlen = (CK_ULONG)n;
    return CKR_OK;
}

static CK_RV f_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR sig,
                    CK_ULONG_PTR siglen)
{
    CK_RV rv = scripted(FAKE_C_Sign);
    SESSION *s = session_of(h);

    if (rv != CKR_OK) {
        if (s != NULL)
            s->op = OP_NONE;
        return rv;
    }
    if (s == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    if (s->op != OP_SIGN)
        return CKR_OPERATION_NOT_INITIALIZED;
    return finish(s, in, inlen, sig, siglen);
}

static CK_RV f_Decrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                       CK_ULONG_PTR outlen)
{
    CK_RV rv = scripted(FAKE_C_Decrypt);
    SESSION *s = session_of(h);

    if (rv != CKR_OK) {
        if (s != NULL)
            s->op = OP_NONE;
        return rv;
    }
    if (s == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    if (s->op != OP_DECRYPT)
        return CKR_OPERATION_NOT_INITIALIZED;
    rv = finish(s, in, inlen, out, outlen);
    if (rv == CKR_FUNCTION_FAILED)
        return like_softhsm ? CKR_GENERAL_ERROR : CKR_ENCRYPTED_DATA_INVALID;
    return rv;
}

/* ECDH: the peer point of the parameters against the key's curve; a session secret key. */
static CK_RV f_DeriveKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE base,
                         CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR out)
{
    CK_RV rv = scripted(FAKE_C_DeriveKey);
    const CK_ECDH1_DERIVE_PARAMS *p = m->pParameter;
    FAKE_OBJ *o = obj_of(base), *secret;
    EVP_PKEY_CTX *pctx = NULL, *dctx = NULL;
    EVP_PKEY *peer = NULL;
    OSSL_PARAM params[3];
    unsigned char z[80];
    size_t zlen = sizeof(z);
    char group[64];
    CK_ULONG want;

    if (rv != CKR_OK)
        return rv;
    if (session_of(h) == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    if (o == NULL || !visible(o) || o->pkey == NULL)
        return CKR_KEY_HANDLE_INVALID;
    if (m->mechanism != CKM_ECDH1_DERIVE || !mech_listed(m->mechanism) || p == NULL ||
        m->ulParameterLen != sizeof(*p) || p->kdf != CKD_NULL)
        return CKR_MECHANISM_PARAM_INVALID;
    if (!fake_attr_true(o, CKA_DERIVE))
        return CKR_KEY_FUNCTION_NOT_PERMITTED;
    mech_record(m);
    template_record(t, n);
    EVP_PKEY_get_utf8_string_param(o->pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, p->pPublicData,
                                                  p->ulPublicDataLen);
    params[2] = OSSL_PARAM_construct_end();
    rv = CKR_FUNCTION_FAILED;
    crypto_begin();
    if ((pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
        EVP_PKEY_fromdata_init(pctx) <= 0 ||
        EVP_PKEY_fromdata(pctx, &peer, EVP_PKEY_PUBLIC_KEY, params) <= 0 ||
        (dctx = EVP_PKEY_CTX_new(o->pkey, NULL)) == NULL || EVP_PKEY_derive_init(dctx) <= 0 ||
        EVP_PKEY_derive_set_peer(dctx, peer) <= 0 || EVP_PKEY_derive(dctx, z, &zlen) <= 0)
        goto end;
    if ((secret = obj_new(out)) == NULL) {
        rv = CKR_DEVICE_MEMORY;
        goto end;
    }
    obj_set_template(secret, t, n);
    want = fake_attr_ulong(secret, CKA_VALUE_LEN, zlen);
    fake_attr_set(secret, CKA_VALUE, z, want < zlen ? want : zlen);
    rv = CKR_OK;
end:
    crypto_end();
    OPENSSL_cleanse(z, sizeof(z));
    EVP_PKEY_free(peer);
    EVP_PKEY_CTX_free(pctx);
    EVP_PKEY_CTX_free(dctx);
    return rv;
}

static CK_RV f_GenerateRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR buf, CK_ULONG len)
{
    CK_RV rv = scripted(FAKE_C_GenerateRandom);

    if (rv != CKR_OK)
        return rv;
    if (session_of(h) == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    return RAND_bytes(buf, (int)len) == 1 ? CKR_OK : CKR_FUNCTION_FAILED;
}

/* --- setup ---------------------------------------------------------------------------- */

void fake_p11_reset(void)
{
    for (size_t i = 0; i < MAX_OBJS; i++)
        if (objs[i].used)
            fake_obj_free(&objs[i]);
    memset(sessions, 0, sizeof(sessions));
    for (size_t i = 0; i < n_templates; i++)
        for (CK_ULONG k = 0; k < templates[i].n; k++)
            OPENSSL_clear_free(templates[i].attrs[k].pValue, templates[i].attrs[k].ulValueLen);
    memset(templates, 0, sizeof(templates));
    n_templates = 0;
    memset(calls, 0, sizeof(calls));
    memset(script, 0, sizeof(script));
    memset(&last_mech, 0, sizeof(last_mech));
    last_input_len = 0;
    /* hwkey_p11_module_adopt() does not call C_Initialize: start initialised. */
    initialized = 1;
    logged_in = 0;
    token_flags = 0;
    like_softhsm = 0;
    fake_p11_set_mechanisms(all_mechs, sizeof(all_mechs) / sizeof(all_mechs[0]));
    memset(&fl, 0, sizeof(fl));
    fl.version.major = 2;
    fl.version.minor = 40;
    fl.C_Initialize = f_Initialize;
    fl.C_Finalize = f_Finalize;
    fl.C_GetSlotList = f_GetSlotList;
    fl.C_GetTokenInfo = f_GetTokenInfo;
    fl.C_GetMechanismList = f_GetMechanismList;
    fl.C_OpenSession = f_OpenSession;
    fl.C_CloseSession = f_CloseSession;
    fl.C_GetSessionInfo = f_GetSessionInfo;
    fl.C_Login = f_Login;
    fl.C_FindObjectsInit = f_FindObjectsInit;
    fl.C_FindObjects = f_FindObjects;
    fl.C_FindObjectsFinal = f_FindObjectsFinal;
    fl.C_GetAttributeValue = f_GetAttributeValue;
    fl.C_CreateObject = f_CreateObject;
    fl.C_DestroyObject = f_DestroyObject;
    fl.C_GenerateKeyPair = f_GenerateKeyPair;
    fl.C_SignInit = f_SignInit;
    fl.C_Sign = f_Sign;
    fl.C_DecryptInit = f_DecryptInit;
    fl.C_Decrypt = f_Decrypt;
    fl.C_DeriveKey = f_DeriveKey;
    fl.C_GenerateRandom = f_GenerateRandom;
}

CK_FUNCTION_LIST *fake_p11_functions(void)
{
    return &fl;
}
