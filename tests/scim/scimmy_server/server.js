// An independent SCIM 2.0 server for scimsync's integration tests: scimmy does the protocol work
// (schema validation, filters, PATCH semantics, error messages), this file only supplies an
// in-memory user store with userName uniqueness, as JumpCloud enforces it.
//
// Usage: node server.js --port N [--api-key KEY]   (or PORT / SCIM_API_KEY in the environment;
// port 0: any free port, printed in the "listening on" line)
// Listens on 127.0.0.1 only. When a key is given, requests must carry it as `x-api-key: KEY` or
// `Authorization: Bearer KEY`; otherwise scimmy answers 401.
import crypto from "node:crypto";
import express from "express";
import SCIMMY from "scimmy";
import SCIMMYRouters from "scimmy-routers";

function argValue(name) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : undefined;
}

const port = Number(argValue("--port") ?? process.env.PORT);
const apiKey = argValue("--api-key") ?? process.env.SCIM_API_KEY ?? "";
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error("scimmy_server: give a TCP port with --port N or PORT=N (0: any free port)");
  process.exit(2);
}

// id -> stored user (plain JSON, without schemas/meta: scimmy adds those on egress).
const users = new Map();

function plain(instance) {
  return JSON.parse(JSON.stringify(instance));
}

function withMeta(id, user, created) {
  const now = new Date().toISOString();
  return {...user, id, meta: {resourceType: "User", created: created ?? now, lastModified: now}};
}

function assertUniqueUserName(userName, selfId) {
  const wanted = String(userName ?? "").toLowerCase();
  for (const [id, u] of users) {
    if (id !== selfId && String(u.userName ?? "").toLowerCase() === wanted) {
      throw new SCIMMY.Types.Error(409, "uniqueness", `userName '${userName}' is already taken by user ${id}`);
    }
  }
}

SCIMMY.Resources.declare(SCIMMY.Resources.User.extend(SCIMMY.Schemas.EnterpriseUser, false))
  .ingress((resource, instance) => {
    const data = plain(instance);
    delete data.schemas;
    delete data.meta;
    if (resource.id) {
      const existing = users.get(resource.id);
      if (!existing) throw new SCIMMY.Types.Error(404, null, `Resource ${resource.id} not found`);
      assertUniqueUserName(data.userName, resource.id);
      const stored = withMeta(resource.id, data, existing.meta?.created);
      users.set(resource.id, stored);
      return stored;
    }
    assertUniqueUserName(data.userName, undefined);
    const id = crypto.randomUUID();
    const stored = withMeta(id, data);
    users.set(id, stored);
    return stored;
  })
  .egress((resource) => {
    if (resource.id) {
      const found = users.get(resource.id);
      if (!found) throw new SCIMMY.Types.Error(404, null, `Resource ${resource.id} not found`);
      return found;
    }
    const all = [...users.values()];
    return resource.filter ? resource.filter.match(all) : all;
  })
  .degress((resource) => {
    if (!users.delete(resource.id)) {
      throw new SCIMMY.Types.Error(404, null, `Resource ${resource.id} not found`);
    }
  });

function authenticate(req) {
  if (!apiKey) return "scimsync-test";
  const bearer = req.header("Authorization");
  if (req.header("x-api-key") === apiKey || bearer === `Bearer ${apiKey}`) return "scimsync-test";
  throw new Error("Missing or wrong API key");
}

const app = express();
app.use("/scim/v2", new SCIMMYRouters({type: "bearer", handler: authenticate}));

const server = app.listen(port, "127.0.0.1", () => {
  // The port the kernel gave for --port 0: test fixtures read it from this line.
  console.log(`scimmy_server: listening on http://127.0.0.1:${server.address().port}/scim/v2`);
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
