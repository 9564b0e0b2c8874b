// Hash routes: "#/cameras/front-door/draw" -> ["cameras", "front-door", "draw"].
import { useEffect, useState } from "preact/hooks";

export function currentRoute(): string[] {
  const hash = window.location.hash.replace(/^#\/?/, "");
  const [path] = hash.split("?");
  return path.split("/").filter(Boolean).map(decodeURIComponent);
}

/** Parameters after "?" in the hash: "#/charts?camera=a" -> {camera: "a"}. */
export function routeParams(): URLSearchParams {
  const hash = window.location.hash;
  const i = hash.indexOf("?");
  return new URLSearchParams(i >= 0 ? hash.slice(i + 1) : "");
}

export function useRoute(): string[] {
  const [route, setRoute] = useState(currentRoute());
  useEffect(() => {
    const onChange = () => setRoute(currentRoute());
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  return route;
}

export function href(...parts: string[]): string {
  return "#/" + parts.map(encodeURIComponent).join("/");
}

export function navigate(...parts: string[]): void {
  window.location.hash = href(...parts).slice(1);
}
