// How transport failures are explained, and how peer addresses are written.
import { describe, expect, it } from '@jest/globals';

import {
  explainTlsFailure,
  failureText,
  tcpAddressText,
  unmapIPv4,
} from '../../../lib/engine/transport/connection.js';

const withCode = (code: string, message = 'raw message') =>
  Object.assign(new Error(message), { code });

describe('explainTlsFailure', () => {
  it.each([
    [
      'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
      'certificate signed by an unknown authority',
      'certificate',
    ],
    ['SELF_SIGNED_CERT_IN_CHAIN', 'certificate signed by an unknown authority', 'certificate'],
    ['CERT_HAS_EXPIRED', 'certificate has expired', 'certificate'],
    ['CERT_NOT_YET_VALID', 'certificate is not yet valid', 'certificate'],
    ['ERR_SSL_HTTP_REQUEST', 'a plain HTTP request on a TLS port', 'local'],
    ['ERR_SSL_WRONG_VERSION_NUMBER', 'bytes that are not TLS (wrong record version)', 'local'],
    [
      'ERR_SSL_UNSUPPORTED_PROTOCOL',
      'a TLS version older than 1.3 (only TLS 1.3 is accepted)',
      'local',
    ],
    [
      'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE',
      'no client certificate presented (client certificates are required)',
      'local',
    ],
    [
      'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA',
      "the peer refused this node's certificate: it does not trust our CA (alert unknown_ca)",
      'peer-alert',
    ],
    ['ECONNRESET', 'the peer reset the connection during the handshake', 'peer-closed'],
    ['ECONNREFUSED', 'connection refused: nothing listens there', 'network'],
    ['ENOENT', 'no such socket file', 'network'],
  ])('explains %s as "%s"', (code, cause, origin) => {
    expect(explainTlsFailure(withCode(code))).toEqual({ cause, code, origin });
  });

  it('keeps the reason of an unknown OpenSSL error, and treats unknown alerts as the peer refusing', () => {
    const err = withCode(
      'ERR_SSL_TLSV1_ALERT_SOMETHING_NEW',
      '80BC04A58C7F0000:error:0A00041B:SSL routines:ssl3_read_bytes:tlsv1 alert something new:../ssl/rec.c:1601:SSL alert number 99\n',
    );
    expect(explainTlsFailure(err)).toEqual({
      cause: 'tlsv1 alert something new',
      code: 'ERR_SSL_TLSV1_ALERT_SOMETHING_NEW',
      origin: 'peer-alert',
    });
  });

  it('uses the message of an error without a code, and never throws on odd values', () => {
    expect(explainTlsFailure(new Error('boom'))).toEqual({
      cause: 'boom',
      code: undefined,
      origin: 'local',
    });
    expect(explainTlsFailure(undefined).cause).toBe('undefined');
    expect(explainTlsFailure({ code: 42 }).code).toBeUndefined();
  });

  it('failureText appends the code in parentheses when there is one', () => {
    expect(failureText(explainTlsFailure(withCode('CERT_HAS_EXPIRED')))).toBe(
      'certificate has expired (CERT_HAS_EXPIRED)',
    );
    expect(failureText({ cause: 'boom', code: undefined, origin: 'local' })).toBe('boom');
  });
});

describe('peer address text', () => {
  it('writes IPv4, IPv6 and IPv4-mapped addresses in DomusAddr form', () => {
    expect(tcpAddressText('127.0.0.1', 53122)).toBe('tls://127.0.0.1:53122');
    expect(tcpAddressText('::1', 7000)).toBe('tls://[::1]:7000');
    expect(tcpAddressText('::ffff:10.1.2.3', 7000)).toBe('tls://10.1.2.3:7000');
    expect(tcpAddressText(undefined, undefined)).toBe('tls://unknown:0');
  });

  it('unmaps only IPv4-mapped IPv6 addresses', () => {
    expect(unmapIPv4('::FFFF:192.168.0.1')).toBe('192.168.0.1');
    expect(unmapIPv4('::ffff:c0a8:1')).toBe('::ffff:c0a8:1');
    expect(unmapIPv4('fe80::1')).toBe('fe80::1');
  });
});
