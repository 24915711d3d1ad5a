/* Independent DTLS client for the ocgate DTLS engine tests: GnuTLS, driven the way openconnect
 * 9.01 drives it (gnutls-dtls.c: gnutls_session_set_premaster for the legacy resumed session,
 * plain PSK for PSK-NEGOTIATE). Written for ocgate; not copied from openconnect.
 *
 *   legacy: gnutls_dtls_client PORT legacy VERSION KX CIPHER MAC MASTER_HEX SESSION_ID_HEX MESSAGE
 *           e.g. 4433 legacy DTLS0.9 RSA AES-256-CBC SHA1 <96 hex> <64 hex> hello
 *   psk:    gnutls_dtls_client PORT psk PSK_HEX APP_ID_HEX MESSAGE
 *
 * Prints "DESCRIPTION <gnutls session description>" and "ECHO <reply>", exits 0 on success.
 * With OCG_REHANDSHAKE=N in the environment it then rehandshakes N times ("REHANDSHAKE i" and
 * one more "ECHO <reply>" each).
 */
#include <arpa/inet.h>
#include <gnutls/dtls.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void check(int rc, const char *what) {
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", what, gnutls_strerror(rc));
        exit(1);
    }
}

static gnutls_datum_t hex_datum(const char *hex) {
    gnutls_datum_t in = {(unsigned char *)hex, (unsigned)strlen(hex)}, out;
    check(gnutls_hex_decode2(&in, &out), "hex");
    return out;
}

int main(int argc, char **argv) {
    if (argc < 6) return 2;
    int legacy = strcmp(argv[2], "legacy") == 0;
    if (legacy && argc != 10) return 2;
    gnutls_session_t session;
    gnutls_psk_client_credentials_t psk_cred;
    check(gnutls_global_init(), "init");
    check(gnutls_init(&session, GNUTLS_CLIENT | GNUTLS_DATAGRAM), "gnutls_init");
    const char *message;
    char priority[512];
    if (legacy) {
        snprintf(priority, sizeof(priority),
                 "NONE:+VERS-%s:+COMP-NULL:+%s:+%s:+%s:+SIGN-ALL:+GROUP-ALL:%%COMPAT", argv[3],
                 argv[5], argv[6], argv[4]);
        check(gnutls_priority_set_direct(session, priority, NULL), priority);
        gnutls_datum_t master = hex_datum(argv[7]), sid = hex_datum(argv[8]);
        check(gnutls_session_set_premaster(session, GNUTLS_CLIENT, gnutls_protocol_get_id(argv[3]),
                                           gnutls_kx_get_id(argv[4]), gnutls_cipher_get_id(argv[5]),
                                           gnutls_mac_get_id(argv[6]), GNUTLS_COMP_NULL, &master,
                                           &sid),
              "set_premaster");
        message = argv[9];
    } else {
        check(gnutls_priority_set_direct(session,
                                         "NORMAL:-VERS-ALL:+VERS-DTLS1.2:-KX-ALL:+PSK:%COMPAT",
                                         NULL),
              "priority");
        gnutls_datum_t key = hex_datum(argv[3]), app_id = hex_datum(argv[4]);
        check(gnutls_psk_allocate_client_credentials(&psk_cred), "psk creds");
        check(gnutls_psk_set_client_credentials(psk_cred, "psk", &key, GNUTLS_PSK_KEY_RAW), "psk");
        check(gnutls_credentials_set(session, GNUTLS_CRD_PSK, psk_cred), "credentials");
        if (app_id.size) check(gnutls_session_set_id(session, &app_id), "set_id");
        message = argv[5];
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in server = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&server, sizeof(server))) return 3;
    gnutls_transport_set_int(session, fd);
    gnutls_dtls_set_mtu(session, 1400);
    gnutls_dtls_set_timeouts(session, 400, 15000);
    gnutls_record_set_timeout(session, 5000);
    int rc;
    do {
        rc = gnutls_handshake(session);
    } while (rc < 0 && !gnutls_error_is_fatal(rc));
    check(rc, "handshake");
    if (legacy && !gnutls_session_is_resumed(session)) return 4;
    char *desc = gnutls_session_get_desc(session);
    printf("DESCRIPTION %s\n", desc);
    gnutls_free(desc);
    check(gnutls_record_send(session, message, strlen(message)), "send");
    char buffer[2048];
    int n = gnutls_record_recv(session, buffer, sizeof(buffer) - 1);
    check(n, "recv");
    buffer[n] = 0;
    printf("ECHO %s\n", buffer);
    fflush(stdout);
    /* OCG_REHANDSHAKE=N: rekey N times as openconnect does at X-DTLS-Rekey-Time with method ssl
     * (gnutls_handshake on the established session: a renegotiation in the current epoch), each
     * followed by one more echo. */
    const char *rekeys = getenv("OCG_REHANDSHAKE");
    for (int i = 0; rekeys != NULL && i < atoi(rekeys); i++) {
        do {
            rc = gnutls_handshake(session);
        } while (rc < 0 && !gnutls_error_is_fatal(rc));
        check(rc, "rehandshake");
        printf("REHANDSHAKE %d\n", i + 1);
        check(gnutls_record_send(session, message, strlen(message)), "send");
        n = gnutls_record_recv(session, buffer, sizeof(buffer) - 1);
        check(n, "recv");
        buffer[n] = 0;
        printf("ECHO %s\n", buffer);
        fflush(stdout);
    }
    gnutls_bye(session, GNUTLS_SHUT_WR);
    gnutls_deinit(session);
    close(fd);
    return 0;
}
