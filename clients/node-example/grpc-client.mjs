// gRPC from Node.js with @grpc/grpc-js: int64 values read exactly, and the google.rpc.Status
// details of an error decoded. Everything comes from the self-contained descriptor set that
// `make protos` writes to build/r3mes.binpb (docs/api.md, "Clients in other languages").
// Run: cd clients/node-example && npm ci && R3MES_GRPC=127.0.0.1:8080 node grpc-client.mjs WALLET
import { readFileSync } from "node:fs";

import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";
import "protobufjs/ext/descriptor/index.js";

const target = process.env.R3MES_GRPC ?? "127.0.0.1:8080";
const descriptorSet = readFileSync(
  process.env.R3MES_DESCRIPTORS ?? new URL("../../build/r3mes.binpb", import.meta.url),
);

// longs: String, or an int64 above 2^53 comes back rounded (2^53 + 1 reads 2^53);
// keepCase: the proto field names (wallet_address), as REST uses them.
const definition = protoLoader.loadFileDescriptorSetFromBuffer(descriptorSet, {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
});
const { r3mes } = grpc.loadPackageDefinition(definition);
const credentials = grpc.credentials.createInsecure();
const credits = new r3mes.credits.v1.CreditsService(target, credentials);
const users = new r3mes.users.v1.UsersService(target, credentials);

function call(client, method, request, metadata = new grpc.Metadata()) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, (error, reply) => (error ? reject(error) : resolve(reply)));
  });
}

// grpc-js leaves an error's details as bytes, in the grpc-status-details-bin trailer: a
// google.rpc.Status whose details are Any messages. The descriptor set holds google.rpc's types.
const types = protobuf.Root.fromDescriptor(descriptorSet);
const Status = types.lookupType("google.rpc.Status");

function detailsOf(error) {
  const [bytes] = error.metadata.get("grpc-status-details-bin");
  if (bytes === undefined) return [];
  return Status.decode(bytes).details.map((any) => {
    const type = types.lookupType(any.type_url.slice(any.type_url.lastIndexOf("/") + 1));
    const detail = type.toObject(type.decode(any.value), { longs: String, enums: String });
    return { "@type": any.type_url, ...detail };
  });
}

async function refusal(client, method, request, metadata) {
  try {
    await call(client, method, request, metadata);
    return null;
  } catch (error) {
    return { code: error.code, details: detailsOf(error) };
  }
}

const wallet = process.argv[2];
const { balance } = await call(credits, "GetBalance", { wallet_address: wallet });
const badKey = new grpc.Metadata();
badKey.set("x-api-key", "r3mes_not_a_real_key");
console.log(
  JSON.stringify({
    available_micro_credits: balance.available_micro_credits,
    bad_field: await refusal(users, "GetUser", { wallet_address: "remes1abc" }),
    bad_key: await refusal(users, "GetUser", { wallet_address: wallet }, badKey),
  }),
);
credits.close();
users.close();
