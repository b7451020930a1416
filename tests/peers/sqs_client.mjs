// An independent SQS client for the tests (the AWS SDK for JavaScript v3, JSON protocol).
// Usage:
//   node sqs_client.mjs create-queue ENDPOINT NAME [ATTRIBUTES_JSON]   prints the queue URL
//   node sqs_client.mjs receive ENDPOINT QUEUE_URL COUNT|all [SECONDS [--pretty]]   prints a JSON array
//   node sqs_client.mjs create-queues ENDPOINT PREFIX COUNT   prints COUNT queue URLs, a line each
//   node sqs_client.mjs receive-many ENDPOINT COUNT SECONDS QUEUE_URL...   prints {URL: [bodies]}
// `receive` reads until COUNT messages came (or SECONDS passed, default 20), deletes them,
// and prints each with its attributes and the MD5s the server computed.
import {
    SQSClient, CreateQueueCommand, ReceiveMessageCommand, DeleteMessageBatchCommand,
} from "@aws-sdk/client-sqs";

const [command, endpoint, ...rest] = process.argv.slice(2);
const client = new SQSClient({
    endpoint,
    region: process.env.AWS_REGION ?? "us-east-1",
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
});

if (command === "create-queue") {
    const [name, attributes] = rest;
    const out = await client.send(new CreateQueueCommand({
        QueueName: name, Attributes: attributes ? JSON.parse(attributes) : undefined,
    }));
    process.stdout.write(out.QueueUrl + "\n");
} else if (command === "receive") {
    const [queueUrl, countText, secondsText] = rest;
    // "all": until two receives in a row come back empty (the queue is drained).
    const want = countText === "all" ? Infinity : Number(countText);
    let empty = 0;
    const until = Date.now() + 1000 * Number(secondsText ?? 20);
    const messages = [];
    while (messages.length < want && Date.now() < until) {
        const out = await client.send(new ReceiveMessageCommand({
            QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
            MessageAttributeNames: ["All"], MessageSystemAttributeNames: ["All"],
        }));
        const got = out.Messages ?? [];
        empty = got.length === 0 ? empty + 1 : 0;
        if (want === Infinity && empty >= 2) break;
        for (const m of got) {
            const attributes = {};
            for (const [name, v] of Object.entries(m.MessageAttributes ?? {})) {
                attributes[name] = {
                    type: v.DataType,
                    value: v.BinaryValue ? Buffer.from(v.BinaryValue).toString("base64") : v.StringValue,
                };
            }
            messages.push({
                body: m.Body, message_id: m.MessageId, md5_of_body: m.MD5OfBody,
                md5_of_attributes: m.MD5OfMessageAttributes ?? null, attributes,
                group_id: m.Attributes?.MessageGroupId ?? null,
                deduplication_id: m.Attributes?.MessageDeduplicationId ?? null,
                sequence_number: m.Attributes?.SequenceNumber ?? null,
            });
        }
        if (got.length > 0) {
            await client.send(new DeleteMessageBatchCommand({
                QueueUrl: queueUrl,
                Entries: got.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle })),
            }));
        }
    }
    if (rest[3] === "--pretty") {
        for (const m of messages) {
            const attributes = Object.entries(m.attributes).sort()
                .map(([k, v]) => `${k}=${v.value}`).join(", ");
            const where = m.group_id ? `[${m.group_id} #${m.sequence_number}] ` : "";
            process.stdout.write(`  ${where}${m.body}   (${attributes})\n`);
        }
    } else {
        process.stdout.write(JSON.stringify(messages) + "\n");
    }
} else if (command === "create-queues") {
    // Many queues in one process (a process per queue costs half a second each).
    const [prefix, countText] = rest;
    const urls = [];
    for (let i = 0; i < Number(countText); i += 25) {
        const names = [];
        for (let j = i; j < Math.min(i + 25, Number(countText)); ++j) names.push(`${prefix}-${j}`);
        const made = await Promise.all(names.map((name) =>
            client.send(new CreateQueueCommand({ QueueName: name }))));
        urls.push(...made.map((out) => out.QueueUrl));
    }
    process.stdout.write(urls.join("\n") + "\n");
} else if (command === "receive-many") {
    // Up to COUNT bodies from each queue (deleted once read), 25 queues at a time, until each
    // has given COUNT or SECONDS passed.
    const [countText, secondsText, ...queueUrls] = rest;
    const want = Number(countText);
    const until = Date.now() + 1000 * Number(secondsText);
    const bodies = {};
    const drain = async (queueUrl) => {
        bodies[queueUrl] = [];
        while (bodies[queueUrl].length < want && Date.now() < until) {
            const out = await client.send(new ReceiveMessageCommand({
                QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
            }));
            const got = out.Messages ?? [];
            bodies[queueUrl].push(...got.map((m) => m.Body));
            if (got.length > 0) {
                await client.send(new DeleteMessageBatchCommand({
                    QueueUrl: queueUrl,
                    Entries: got.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle })),
                }));
            }
        }
    };
    for (let i = 0; i < queueUrls.length; i += 25)
        await Promise.all(queueUrls.slice(i, i + 25).map(drain));
    process.stdout.write(JSON.stringify(bodies) + "\n");
} else {
    process.stderr.write("usage: sqs_client.mjs create-queue|create-queues|receive|receive-many ENDPOINT ...\n");
    process.exit(2);
}
