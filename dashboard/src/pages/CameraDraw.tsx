import { PageHeader } from "../components/ui";
import type { PageProps } from ".";

/** Route: ["cameras", "<id>", "draw"]. */
export function CameraDrawPage(_props: PageProps) {
  return (
    <section>
      <PageHeader title="CameraDraw" />
      <p>Coming soon.</p>
    </section>
  );
}
