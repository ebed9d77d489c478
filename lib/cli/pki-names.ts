// What a node certificate is named: its subject CN and its subject alternative names, checked.
import { isIP } from 'node:net';

// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata
// polyfill loaded before the library itself.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

import { AureliaError, ErrorId } from '../engine/errors.js';
import type { NodeCertificateOptions } from './pki.js';

/** The default trust domain of node URIs: `spiffe://aurelia.local/<name>`. */
export const DEFAULT_TRUST_DOMAIN = 'aurelia.local';

// Characters RFC 4514 escapes inside a value, plus a leading space or '#' and a trailing space.
const DN_SPECIAL = /[\\",+;<>=]/g;

/**
 * The subject `CN=<commonName>`. Built from the escaped string form: @peculiar/x509 mangles
 * values with quotes or commas given in its JSON form. Throws `AureliaError(InvalidConfig)` for control
 * characters or a name that cannot be encoded.
 */
export function subjectName(commonName: string): x509.Name {
  // eslint-disable-next-line no-control-regex -- control characters are what is refused here
  if (/[\u0000-\u001f\u007f]/.test(commonName)) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `commonName ${JSON.stringify(commonName)} must not contain control characters`,
    );
  }
  const escaped = commonName
    .replace(DN_SPECIAL, (char) => `\\${char}`)
    .replace(/^[ #]/, (char) => `\\${char}`)
    .replace(/ $/, '\\ ');
  const name = new x509.Name(`CN=${escaped}`);
  const rdns = name.toJSON();
  if (rdns.length !== 1 || rdns[0]?.CN?.[0] !== commonName) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `commonName ${JSON.stringify(commonName)} cannot be encoded as a certificate subject`,
    );
  }
  return name;
}

/** `commonName` when it is a non-blank string; throws `AureliaError(InvalidConfig)` otherwise. */
export function requireCommonName(commonName: string): string {
  if (typeof commonName !== 'string' || commonName.trim().length === 0) {
    throw new AureliaError(ErrorId.InvalidConfig, 'commonName must be a non-empty string');
  }
  return commonName;
}

// A trust domain is a lowercase DNS-like name (SPIFFE); a node name is one path segment.
const TRUST_DOMAIN = /^[a-z0-9]([a-z0-9._-]{0,253}[a-z0-9])?$/;
const NODE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const DNS_NAME =
  /^(\*\.)?([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?$/;

/**
 * True when `name` is a valid node name: 1 to 64 characters from letters, digits, `.`, `_` and
 * `-`, starting with a letter or digit (safe as a URI path segment and as a file name).
 */
export function isValidNodeName(name: string): boolean {
  return NODE_NAME.test(name);
}

/** True when `domain` is a valid SPIFFE trust domain (lowercase letters, digits, `.`, `_`, `-`). */
export function isValidTrustDomain(domain: string): boolean {
  return TRUST_DOMAIN.test(domain);
}

/**
 * The SANs of a node certificate: its URI (`spiffe://<trust domain>/<name>` unless `uri` says
 * otherwise), DNS names and IP addresses. Throws `AureliaError(InvalidConfig)` for a name or trust
 * domain that cannot form a URI, an invalid URI, DNS name or IP address.
 */
export function subjectAltNames(options: NodeCertificateOptions): x509.JsonGeneralName[] {
  const names: x509.JsonGeneralName[] = [];
  if (options.uri === undefined) {
    const trustDomain = options.trustDomain ?? DEFAULT_TRUST_DOMAIN;
    if (!isValidTrustDomain(trustDomain)) {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        `trust domain '${trustDomain}' must be lowercase letters, digits, '.', '_' or '-'`,
      );
    }
    if (!isValidNodeName(options.name)) {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        `node name '${options.name}' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
      );
    }
    names.push({ type: 'url', value: `spiffe://${trustDomain}/${options.name}` });
  } else if (options.uri !== false) {
    if (!URL.canParse(options.uri)) {
      throw new AureliaError(ErrorId.InvalidConfig, `uri '${options.uri}' is not a valid URI`);
    }
    names.push({ type: 'url', value: options.uri });
  }
  for (const dns of options.dnsNames ?? []) {
    if (dns.length > 253 || !DNS_NAME.test(dns)) {
      throw new AureliaError(ErrorId.InvalidConfig, `DNS name '${dns}' is not a valid host name`);
    }
    names.push({ type: 'dns', value: dns });
  }
  for (const ip of options.ipAddresses ?? []) {
    if (isIP(ip) === 0) {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        `IP address '${ip}' is not a valid IPv4 or IPv6 address`,
      );
    }
    names.push({ type: 'ip', value: ip });
  }
  return names;
}
