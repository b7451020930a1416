// Starts s3rver (a local S3 that checks signatures with the key pair S3RVER/S3RVER and the
// expiry of pre-signed URLs) on 127.0.0.1 and prints {"port": N} once it listens.
// Usage: node s3rver_peer.mjs PORT DIRECTORY [BUCKET...]   (PORT 0: any free port)
import S3rver from "s3rver";

const [portText, directory, ...buckets] = process.argv.slice(2);
const server = new S3rver({
    address: "127.0.0.1",
    port: Number(portText ?? 0),
    silent: true,
    directory,
    configureBuckets: buckets.map((name) => ({ name })),
});
const { port } = await server.run();
process.stdout.write(JSON.stringify({ port }) + "\n");

const stop = async () => {
    await server.close();
    process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
