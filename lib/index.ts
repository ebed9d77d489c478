// The public entry point: everything a user imports comes from here.
export { AureliaError, ErrorId, errorIdName } from './engine/errors.js';
export {
  A1_MESSAGE_TYPE_MAX,
  A2_MESSAGE_TYPE_BASE,
  A2_MESSAGE_TYPE_MAX,
  A3_MESSAGE_TYPE_BASE,
  A3_MESSAGE_TYPE_MAX_OFFSET,
  MessagePriorityClass,
  a3MessageType,
  classifyMessagePriority,
  tryA3MessageType,
  type MessageType,
  type TabernaId,
} from './engine/ids.js';
