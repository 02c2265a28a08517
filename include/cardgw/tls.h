/* tls.h — TLS on the node's port (tls_cert_file, tls_key_file): the vhost's OpenSSL settings,
 * the PEM files checked before use, and the certificate swapped in place on reload. */
#ifndef CARDGW_TLS_H
#define CARDGW_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "cardgw/config.h"

struct lws_context_creation_info;

/* Whether cfg turns TLS on (both files set; config validation refuses one without the other). */
static inline int gw_tls_on(const gw_config_t *cfg)
{
    return cfg->tls_cert_file[0] != '\0';
}
/* Reads and checks cfg's certificate chain and key (PEM, the key unencrypted and matching the
 * first certificate) without keeping them. Returns 0 (also when TLS is off), or -EINVAL with a
 * message naming the file and what is wrong in err (errlen bytes). */
int gw_tls_check_files(const gw_config_t *cfg, char *err, size_t errlen);
/* Fills the TLS part of a vhost's creation info from cfg (borrowed for the vhost's creation). */
void gw_tls_vhost_info(const gw_config_t *cfg, struct lws_context_creation_info *info);
/* The vhost's SSL_CTX (ssl_ctx, borrowed; lws owns it) is being set up: TLS 1.2 at least. */
void gw_tls_ctx_init(void *ssl_ctx);
/* Loads cfg's files again and, only when both read and match, puts them in ssl_ctx in place:
 * handshakes from now on present the new certificate, established connections keep theirs.
 * Returns 0 with what was loaded described in what (subject, serial, expiry) and its notAfter in
 * *expires_s (Unix seconds), or -EINVAL with the reason in what (the context keeps its
 * certificate, *expires_s is unchanged). */
int gw_tls_reload(void *ssl_ctx, const gw_config_t *cfg, char *what, size_t cap,
                  uint64_t *expires_s);

#endif
