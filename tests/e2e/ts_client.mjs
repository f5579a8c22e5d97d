// The TypeScript SDK's client (@modelcontextprotocol/sdk, pinned in package.json) over
// Streamable HTTP, for tests/e2e/test_replicas.py: `node ts_client.mjs URL CALLS CUSTOMER`
// opens one session, makes CALLS tool calls (a purchase of product 3 every fifth, get_product
// otherwise), and prints one JSON line: the session id, the negotiated protocol version, the
// ids of the orders placed and every failure (a thrown error or a tool error).
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, calls, customer] = process.argv.slice(2);
const client = new Client({ name: "ts-replica-test", version: "1.0.0" });
const transport = new StreamableHTTPClientTransport(new URL(url));
await client.connect(transport);
const failures = [];
const orders = [];
for (let i = 0; i < Number(calls); i++) {
  try {
    const buying = i % 5 === 0;
    const result = await client.callTool(
      buying
        ? {
            name: "create_purchase",
            arguments: { customerName: customer, items: [{ productId: 3, quantity: 1 }] },
          }
        : { name: "get_product", arguments: { productId: 1 + (i % 4) } },
    );
    if (result.isError) throw new Error(JSON.stringify(result.content));
    if (buying) orders.push(result.structuredContent.id);
  } catch (e) {
    failures.push(`call ${i}: ${e}`);
  }
}
const sessionId = transport.sessionId;
const protocolVersion = transport.protocolVersion;
await client.close();
console.log(JSON.stringify({ sessionId, protocolVersion, orders, failures }));
