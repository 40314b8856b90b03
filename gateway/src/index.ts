export { gatewayCommand, gatewayUsage } from "./cli.js";
export { gatewayConfig, GatewayConfigError, type GatewayConfig } from "./config.js";
export { startGateway, type Gateway, type GatewayContext, type RouteFactory } from "./server.js";
export { Router, type Route, type RouteContext, type RouteHandler } from "./http/router.js";
export { GatewayRelay, SignerDidNotApprove, type GatewayRelayOptions } from "./requests/gateway-relay-client.js";
