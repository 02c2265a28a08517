/* tls.c — TLS on the node's port: OpenSSL settings of the vhost (TLS 1.2+, cipher list), and the
 * certificate chain and key read from PEM files, checked whole before they replace anything. */
#include "cardgw/tls.h"

#include <errno.h>
#include <libwebsockets.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* TLS 1.2 suites with forward secrecy and AEAD only (Mozilla's "intermediate" list); TLS 1.3
 * keeps OpenSSL's defaults, which are all AEAD. */
#define GW_TLS12_CIPHERS                                                                           \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"     \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

typedef struct {
    X509 *leaf;
    STACK_OF(X509) * chain; /* the certificates after the first one in the file */
    EVP_PKEY *key;
} gw_tls_pair_t;

static void gw_tls_pair_free(gw_tls_pair_t *p)
{
    X509_free(p->leaf);
    sk_X509_pop_free(p->chain, X509_free);
    EVP_PKEY_free(p->key);
    memset(p, 0, sizeof(*p));
}

/* An encrypted key is refused instead of OpenSSL asking for a passphrase on the terminal. */
static int gw_tls_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return -1;
}

static int gw_tls_fail(char *err, size_t errlen, const char *key, const char *path,
                       const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    snprintf(err, errlen, "%s '%s': %s%s%s", key, path, what, why ? ": " : "", why ? why : "");
    ERR_clear_error();
    return -EINVAL;
}

/* Reads both files of cfg into *p (freed by the caller either way). 0 or -EINVAL with err. */
static int gw_tls_load(const gw_config_t *cfg, gw_tls_pair_t *p, char *err, size_t errlen)
{
    const char *cert = cfg->tls_cert_file, *key = cfg->tls_key_file;
    memset(p, 0, sizeof(*p));
    ERR_clear_error();
    BIO *b = BIO_new_file(cert, "r");
    if (!b) {
        snprintf(err, errlen, "tls_cert_file '%s': cannot open: %s", cert, strerror(errno));
        ERR_clear_error();
        return -EINVAL;
    }
    p->leaf = PEM_read_bio_X509_AUX(b, NULL, gw_tls_no_passphrase, NULL);
    p->chain = sk_X509_new_null();
    X509 *x;
    while (p->leaf && p->chain && (x = PEM_read_bio_X509(b, NULL, gw_tls_no_passphrase, NULL)))
        if (!sk_X509_push(p->chain, x))
            X509_free(x);
    BIO_free(b);
    if (!p->leaf)
        return gw_tls_fail(err, errlen, "tls_cert_file", cert, "no PEM certificate");
    unsigned long e = ERR_peek_last_error(); /* the end of the file ends the chain */
    if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE))
        return gw_tls_fail(err, errlen, "tls_cert_file", cert, "bad certificate in the chain");
    ERR_clear_error();
    b = BIO_new_file(key, "r");
    if (!b) {
        snprintf(err, errlen, "tls_key_file '%s': cannot open: %s", key, strerror(errno));
        ERR_clear_error();
        return -EINVAL;
    }
    p->key = PEM_read_bio_PrivateKey(b, NULL, gw_tls_no_passphrase, NULL);
    BIO_free(b);
    if (!p->key)
        return gw_tls_fail(err, errlen, "tls_key_file", key, "no unencrypted PEM private key");
    if (X509_check_private_key(p->leaf, p->key) != 1)
        return gw_tls_fail(err, errlen, "tls_key_file", key,
                           "does not match the certificate of tls_cert_file");
    return 0;
}

int gw_tls_check_files(const gw_config_t *cfg, char *err, size_t errlen)
{
    gw_tls_pair_t p;
    if (!gw_tls_on(cfg))
        return 0;
    int rc = gw_tls_load(cfg, &p, err, errlen);
    gw_tls_pair_free(&p);
    return rc;
}

void gw_tls_vhost_info(const gw_config_t *cfg, struct lws_context_creation_info *info)
{
    info->options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info->ssl_cert_filepath = cfg->tls_cert_file;
    info->ssl_private_key_filepath = cfg->tls_key_file;
    info->ssl_cipher_list = GW_TLS12_CIPHERS;
    /* HTTP/1.1 only: lws offers h2 by default, and the node's answers (connection: close, the
     * WebSocket upgrade of RFC 6455) are HTTP/1.1 */
    info->alpn = "http/1.1";
    info->ssl_options_set =
        (long)(SSL_OP_NO_SSLv2 | SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1 |
               SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
}

void gw_tls_ctx_init(void *ssl_ctx)
{
    SSL_CTX_set_min_proto_version((SSL_CTX *)ssl_ctx, TLS1_2_VERSION);
}

/* "CN=..., serial ..., expires ..." of x into out. */
static void gw_tls_describe(X509 *x, char *out, size_t cap)
{
    char cn[128] = "?", serial[80] = "?", until[64] = "?";
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    if (hex)
        snprintf(serial, sizeof(serial), "%s", hex);
    OPENSSL_free(hex);
    BN_free(bn);
    BIO *m = BIO_new(BIO_s_mem());
    if (m && ASN1_TIME_print(m, X509_get0_notAfter(x)) == 1) {
        int n = BIO_read(m, until, sizeof(until) - 1);
        until[n > 0 ? n : 0] = '\0';
    }
    BIO_free(m);
    snprintf(out, cap, "CN=%s, serial %s, expires %s", cn, serial, until);
}

int gw_tls_reload(void *ssl_ctx, const gw_config_t *cfg, char *what, size_t cap,
                  uint64_t *expires_s)
{
    SSL_CTX *ctx = ssl_ctx;
    gw_tls_pair_t p;
    int rc = gw_tls_load(cfg, &p, what, cap);
    EVP_PKEY *old = SSL_CTX_get0_privatekey(ctx);
    if (!rc && old && EVP_PKEY_base_id(old) != EVP_PKEY_base_id(p.key)) {
        /* OpenSSL keeps one certificate per key type: the old one would stay and be chosen too */
        snprintf(what, cap,
                 "tls_key_file '%s': another key type than the running one (%s, was %s): "
                 "restart the node to change it",
                 cfg->tls_key_file, OBJ_nid2sn(EVP_PKEY_base_id(p.key)),
                 OBJ_nid2sn(EVP_PKEY_base_id(old)));
        rc = -EINVAL;
    }
    /* same key type: each call replaces what the context holds for it; nothing can fail for
     * lack of a match any more (checked above), so the context never holds half a pair */
    if (!rc &&
        (SSL_CTX_use_certificate(ctx, p.leaf) != 1 || SSL_CTX_use_PrivateKey(ctx, p.key) != 1 ||
         SSL_CTX_set1_chain(ctx, p.chain) != 1 || SSL_CTX_check_private_key(ctx) != 1))
        rc = gw_tls_fail(what, cap, "tls_cert_file", cfg->tls_cert_file,
                         "OpenSSL refused the new pair");
    struct tm tm;
    if (!rc) {
        gw_tls_describe(p.leaf, what, cap);
        if (ASN1_TIME_to_tm(X509_get0_notAfter(p.leaf), &tm) == 1)
            *expires_s = (uint64_t)timegm(&tm);
    }
    gw_tls_pair_free(&p);
    return rc;
}
