#!/usr/bin/env node
// Test harness: an in-memory did:plc directory plus the reference ATProto PDS,
// both bound to 127.0.0.1, for plyrd's pytest suite (see tests/pds_harness.py).
//
//   PLC_PORT=... PDS_PORT=... node start.mjs
//
// Prints ONE JSON line on stdout when both servers listen:
//   {"pds": "http://localhost:PDS_PORT", "plc": "http://localhost:PLC_PORT", "dir": "/tmp/plyrd-pds-..."}
// Runs until SIGTERM/SIGINT (or stdin EOF with PDS_EXIT_ON_STDIN_EOF=1), then
// stops both servers and removes its data directory. Logs go to stderr
// (LOG_ENABLED=true for PDS logs).
//
// Commands, one per line on stdin, to simulate a PDS outage (PLC stays up):
//   stop-pds    the PDS's HTTP server goes away; answers {"event": "pds-stopped"}
//   start-pds   a PDS again on the same port, data directory and keys, so every
//               account, record, blob and token survives; answers {"event": "pds-started"}
// A command that fails answers {"event": "error", "message": "..."}.
//
// Env: PLC_PORT, PDS_PORT (required: the caller picks free ports, because the
// PDS must know its public URL before it listens, so port 0 cannot work);
// PDS_BLOB_UPLOAD_LIMIT (bytes, default 100 MB); PDS_OAUTH_TRUSTED_CLIENTS
// (comma-separated client_ids that skip the consent screen).

import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import { Secp256k1Keypair } from '@atproto/crypto'
import { PDS, envToCfg, envToSecrets } from '@atproto/pds'
// @did-plc/server is CommonJS: import the default export, then destructure.
import plcPkg from '@did-plc/server'

const { PlcServer, Database: PlcDatabase } = plcPkg
const HOST = '127.0.0.1'

const port = (name) => {
  const value = Number(process.env[name])
  if (!Number.isInteger(value) || value <= 0 || value > 65535) {
    throw new Error(`${name} must be a port number, got ${JSON.stringify(process.env[name])}`)
  }
  return value
}

// Both servers call `app.listen(port)`, i.e. all interfaces; add the host so
// they listen on loopback only. (The PDS's xrpc layer wraps app.listen itself to
// attach the websocket upgrade; this wrapper sits outside it and keeps that.)
const bindLoopback = (app) => {
  const orig = app.listen
  app.listen = (p, ...rest) => orig.call(app, p, HOST, ...rest)
}

const list = (value) =>
  (value || '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)

async function main() {
  const plcPort = port('PLC_PORT')
  const pdsPort = port('PDS_PORT')

  const plc = PlcServer.create({ db: PlcDatabase.mock(), port: plcPort })
  bindLoopback(plc.app)
  await plc.start()
  const plcUrl = `http://localhost:${plcPort}`

  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'plyrd-pds-'))
  const rotationKey = await Secp256k1Keypair.create({ exportable: true })
  const recoveryKey = await Secp256k1Keypair.create()
  const trusted = list(process.env.PDS_OAUTH_TRUSTED_CLIENTS)

  const env = {
    // devMode: http:// issuer and public URL accepted, SSRF protection off
    // (the PDS fetches the PLC on loopback).
    devMode: true,
    port: pdsPort,
    // 'localhost' => publicUrl http://localhost:<port>, which is also the OAuth
    // issuer; the loopback OAuth client rules need no extra config.
    hostname: 'localhost',
    serviceName: 'plyrd test PDS',
    dataDirectory: dir,
    blobstoreDiskLocation: path.join(dir, 'blobs'),
    // Audio blobs are bigger than the 5 MB default.
    blobUploadLimit: Number(process.env.PDS_BLOB_UPLOAD_LIMIT) || 100 * 1024 * 1024,
    didPlcUrl: plcUrl,
    serviceHandleDomains: ['.test'],
    inviteRequired: false,
    jwtSecret: 'plyrd-test-jwt-secret',
    adminPassword: 'admin-pass',
    plcRotationKeyK256PrivateKeyHex: Buffer.from(await rotationKey.export()).toString('hex'),
    recoveryDidKey: recoveryKey.did(),
    // No appview, mod service, crawlers, email or redis: nothing leaves the box.
    crawlers: [],
    rateLimitsEnabled: false,
    trustedOAuthClients: trusted.length ? trusted : undefined,
  }
  // Built from the same env each time, so a restarted PDS has the same identity, keys and data.
  const startPds = async () => {
    const created = await PDS.create(envToCfg(env), envToSecrets(env))
    bindLoopback(created.app)
    await created.start()
    return created
  }
  let pds
  try {
    pds = await startPds()
  } catch (err) {
    await plc.destroy().catch(() => {})
    await fs.rm(dir, { recursive: true, force: true })
    throw err
  }

  process.stdout.write(
    JSON.stringify({ pds: `http://localhost:${pdsPort}`, plc: plcUrl, dir }) + '\n',
  )

  let stopping = false
  const stop = async (why) => {
    if (stopping) return
    stopping = true
    process.stderr.write(`start.mjs: ${why}, shutting down\n`)
    // Never hang the test run on a stuck shutdown.
    setTimeout(() => process.exit(1), 5000).unref()
    if (pds) await pds.destroy().catch((e) => process.stderr.write(`pds.destroy: ${e}\n`))
    await plc.destroy().catch((e) => process.stderr.write(`plc.destroy: ${e}\n`))
    await fs.rm(dir, { recursive: true, force: true })
    process.exit(0)
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  const answer = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
  const commands = {
    'stop-pds': async () => {
      if (pds) {
        const stopped = pds
        pds = undefined
        await stopped.destroy()
      }
      answer({ event: 'pds-stopped' })
    },
    'start-pds': async () => {
      if (!pds) pds = await startPds()
      answer({ event: 'pds-started' })
    },
  }
  // One command at a time, in order: a start never races the stop before it.
  let queue = Promise.resolve()
  const rl = readline.createInterface({ input: process.stdin })
  rl.on('line', (line) => {
    const name = line.trim()
    if (!name) return
    queue = queue.then(async () => {
      if (stopping) return
      const run = commands[name]
      if (!run) return answer({ event: 'error', message: `unknown command ${name}` })
      try {
        await run()
      } catch (err) {
        answer({ event: 'error', message: String(err?.stack || err) })
      }
    })
  })
  // The Python side holds our stdin open: if it dies (even SIGKILL), the pipe
  // closes and we clean up instead of leaking a server and a temp dir.
  if (process.env.PDS_EXIT_ON_STDIN_EOF === '1') {
    rl.on('close', () => stop('stdin EOF'))
  }
}

main().catch((err) => {
  process.stderr.write(`start.mjs failed: ${err?.stack || err}\n`)
  process.exit(1)
})
