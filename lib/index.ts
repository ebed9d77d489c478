// The public entry point: everything a user imports comes from here.
export { AureliaError, ErrorId, errorIdName } from './engine/errors.js';
