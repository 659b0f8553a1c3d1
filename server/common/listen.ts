import type { Server } from 'node:net';
import { BoardfleetError } from '../../protocol/errors.ts';

/** Listens, turning "address in use" into one line that names the variable to change. */
export function listenOrExplain(server: Server, port: number, host: string, variable: string, what: string) {
  return new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      if (error.code === 'EADDRINUSE') {
        reject(
          new BoardfleetError(
            'port-in-use',
            `${what} port ${port} is already in use: set ${variable} to a free port`,
            { cause: error },
          ),
        );
      } else {
        reject(error);
      }
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, host);
  });
}
