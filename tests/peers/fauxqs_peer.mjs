// Starts the fauxqs SQS/S3 emulator on 127.0.0.1 (its own CLI binds every interface) and
// prints {"port": N} once it listens. Stops on SIGTERM/SIGINT or when stdin closes.
// Usage: node fauxqs_peer.mjs [PORT]   (0 or nothing: any free port)
import { startFauxqs } from "fauxqs";

const port = Number(process.argv[2] ?? 0);
const server = await startFauxqs({ host: "127.0.0.1", port, logger: false });
process.stdout.write(JSON.stringify({ port: server.port }) + "\n");

const stop = async () => {
    await server.stop();
    process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
