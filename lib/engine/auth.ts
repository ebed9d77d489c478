// Authentication material of a domus: config shapes, loading and validation (see `auth/`).
export {
  Pkcs8AuthConfig,
  type AuthSourceLabels,
  type Pkcs8AuthFiles,
  type Pkcs8DerConfig,
  type Pkcs8PemConfig,
} from './auth/auth-config.js';
export {
  loadAuthMaterial,
  type AuthCertificateInfo,
  type AuthMaterial,
  type LoadAuthMaterialOptions,
} from './auth/material.js';
export { derToPemBuffer } from './auth/pem.js';
export { Pkcs8PrivateKey, type AuthKeyType } from './auth/private-key.js';
