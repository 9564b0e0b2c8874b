// A camera picture with an SVG overlay in the picture's own pixel coordinates (viewBox = image
// size), so shapes drawn on it scale with the page and are saved in image pixels.
// Pointer Events drive it: mouse, pen and touch behave the same.
import "./canvas.css";

import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";

export type Pt = [number, number];

export interface ImageSize {
  width: number;
  height: number;
}

/** Picture sources tried in order until one loads (the first may be refused, e.g. live feed off). */
export function useCameraPicture(urls: string[], reloadKey: number) {
  const [index, setIndex] = useState(0);
  const [size, setSize] = useState<ImageSize | null>(null);
  const [failed, setFailed] = useState(false);
  useEffect(() => { setIndex(0); setFailed(false); }, [urls.join("|"), reloadKey]);
  const url = urls[index];
  return {
    src: url ? `${url}${url.includes("?") ? "&" : "?"}t=${reloadKey}` : undefined,
    size,
    failed,
    onLoad: (e: Event) => {
      const img = e.currentTarget as HTMLImageElement;
      setSize({ width: img.naturalWidth, height: img.naturalHeight });
    },
    onError: () => {
      if (index + 1 < urls.length) setIndex(index + 1);
      else setFailed(true);
    },
  };
}

/** Image pixels per screen pixel of the stage (for handle sizes that look the same at any width). */
function useUnit(ref: { current: SVGSVGElement | null }, width: number): number {
  const [unit, setUnit] = useState(1);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const update = () => {
      const w = el.getBoundingClientRect().width;
      if (w > 0) setUnit(width / w);
    };
    update();
    const ro = new ResizeObserver(update);
    ro.observe(el);
    return () => ro.disconnect();
  }, [ref.current, width]);
  return unit;
}

export interface StageProps {
  picture: ReturnType<typeof useCameraPicture>;
  /** Size used when no picture could be loaded (shapes can still be seen and edited). */
  fallbackSize?: ImageSize;
  label: string;
  describedBy?: string;
  editable: boolean;
  /** Called with image-pixel coordinates. */
  onPointerDown?: (p: Pt, e: PointerEvent) => void;
  onPointerMove?: (p: Pt, e: PointerEvent) => void;
  onPointerUp?: (p: Pt, e: PointerEvent) => void;
  onKeyDown?: (e: KeyboardEvent) => void;
  children: (unit: number, size: ImageSize) => ComponentChildren;
}

export function CanvasStage(props: StageProps) {
  const svgRef = useRef<SVGSVGElement | null>(null);
  const size = props.picture.size ?? props.fallbackSize ?? { width: 1280, height: 720 };
  const unit = useUnit(svgRef, size.width);

  const toImage = (e: PointerEvent): Pt => {
    const rect = svgRef.current!.getBoundingClientRect();
    const x = ((e.clientX - rect.left) / rect.width) * size.width;
    const y = ((e.clientY - rect.top) / rect.height) * size.height;
    return [clamp(Math.round(x), 0, size.width - 1), clamp(Math.round(y), 0, size.height - 1)];
  };

  return (
    <div class={`stage${props.editable ? " editable" : ""}`}
         style={{ maxWidth: `calc(78vh * ${(size.width / size.height).toFixed(4)})` }}>
      {props.picture.src && !props.picture.failed ? (
        <img src={props.picture.src} alt="" onLoad={props.picture.onLoad} onError={props.picture.onError}
             draggable={false} />
      ) : (
        <div class="stage-blank" style={{ aspectRatio: `${size.width} / ${size.height}` }} />
      )}
      <svg ref={svgRef} viewBox={`0 0 ${size.width} ${size.height}`} preserveAspectRatio="none"
           role="application" aria-label={props.label} aria-describedby={props.describedBy}
           aria-disabled={!props.editable}
           // SVG attributes are case-sensitive: "tabIndex" would not make it focusable.
           {...{ tabindex: 0 }}
           onPointerDown={(e) => {
             if (!props.editable || !props.onPointerDown) return;
             if (e.button !== 0 && e.pointerType === "mouse") return;
             svgRef.current?.focus({ preventScroll: true });
             svgRef.current?.setPointerCapture?.(e.pointerId);
             e.preventDefault();
             props.onPointerDown(toImage(e), e);
           }}
           onPointerMove={(e) => { if (props.editable) props.onPointerMove?.(toImage(e), e); }}
           onPointerUp={(e) => { if (props.editable) props.onPointerUp?.(toImage(e), e); }}
           onKeyDown={(e) => props.onKeyDown?.(e)}>
        <rect class="stage-bg" x={0} y={0} width={size.width} height={size.height} />
        {props.children(unit, size)}
      </svg>
    </div>
  );
}

export function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}

export function dist(a: Pt, b: Pt): number {
  return Math.hypot(a[0] - b[0], a[1] - b[1]);
}

export function pointsAttr(points: Pt[]): string {
  return points.map((p) => `${p[0]},${p[1]}`).join(" ");
}

/** A text label with a dark halo, readable on any picture. */
export function SvgLabel(props: { x: number; y: number; unit: number; children: ComponentChildren;
                                  class?: string }) {
  return (
    <text x={props.x} y={props.y} class={`svg-label ${props.class ?? ""}`}
          style={{ fontSize: `${14 * props.unit}px`, strokeWidth: `${3 * props.unit}px` }}>
      {props.children}
    </text>
  );
}
