// The name a person gave a camera, for page titles (its id until the camera is loaded, or when
// it has no name or cannot be read).
import { useEffect, useState } from "preact/hooks";

import { api } from "../api";

export function useCameraName(id: string): string {
  const [name, setName] = useState<string | null>(null);
  useEffect(() => {
    setName(null);
    const ctl = new AbortController();
    api.get<{ name?: string | null }>(`/cameras/${encodeURIComponent(id)}`, ctl.signal)
      .then((cam) => setName(cam.name?.trim() || null))
      .catch(() => {});
    return () => ctl.abort();
  }, [id]);
  return name ?? id;
}
