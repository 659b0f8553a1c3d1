// The app pi-with-app preinstalls: answers every request with a greeting, and /healthz with ok.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

function greeting() {
  try {
    const line = readFileSync('/etc/boardfleet/hello.env', 'utf8')
      .split('\n')
      .find((candidate) => candidate.startsWith('GREETING='));
    if (line) return line.slice('GREETING='.length);
  } catch {
    // not on an image: the default below
  }
  return 'hello';
}

const text = greeting();
const port = Number(process.env.PORT ?? 8081);
createServer((request, response) => {
  response.writeHead(200, { 'content-type': 'text/plain' });
  response.end(request.url === '/healthz' ? 'ok\n' : `${text}\n`);
}).listen(port, () => console.log(`hello: listening on ${port}`));
