// Preload for Node 20: @medplum/core 5.2.x reads `WebSocket.CLOSING` when its module is
// evaluated, and Node 20 has no global WebSocket (without --experimental-websocket).
// This module must be evaluated BEFORE @medplum/core is loaded: either preload it with
// `node --import ./ws-global.mjs`, or `await import()` it before a dynamic import of the
// client (static imports are hoisted). On Node >= 22 the built-in global is kept.
import WebSocket from 'ws';

if (typeof globalThis.WebSocket === 'undefined') {
  globalThis.WebSocket = WebSocket;
}
