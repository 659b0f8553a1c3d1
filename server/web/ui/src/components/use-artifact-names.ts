import { useEffect, useState } from 'preact/hooks';
import { api } from '../api/client.ts';
import type { Artifact } from '../api/types.ts';

/**
 * `name version` of each artifact read so far, for the whole page session: an artifact id always
 * names the same artifact, so each is asked for once however often a view re-renders.
 */
const names = new Map<string, Promise<string>>();

function nameOf(id: string): Promise<string> {
  let name = names.get(id);
  if (!name) {
    name = api<Artifact>('GET', `/api/v1/artifacts/${encodeURIComponent(id)}`).then(
      (artifact) => `${artifact.name} ${artifact.version}`,
      () => {
        // Shown by its id this time; asked again by the next view that needs it.
        names.delete(id);
        return id;
      },
    );
    names.set(id, name);
  }
  return name;
}

/** The artifacts' `name version` by id, once read; the caller shows the id of one not read (yet). */
export function useArtifactNames(ids: readonly string[]): ReadonlyMap<string, string> {
  const key = [...new Set(ids)].sort().join(',');
  const [known, setKnown] = useState<ReadonlyMap<string, string>>(new Map());
  useEffect(() => {
    let current = true;
    const wanted = key ? key.split(',') : [];
    void Promise.all(wanted.map(async (id) => [id, await nameOf(id)] as const)).then((entries) => {
      if (current) setKnown(new Map(entries));
    });
    return () => {
      current = false;
    };
  }, [key]);
  return known;
}
