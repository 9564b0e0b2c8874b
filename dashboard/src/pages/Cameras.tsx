import { PageHeader } from "../components/ui";
import type { PageProps } from ".";

export function CamerasPage(_props: PageProps) {
  return (
    <section>
      <PageHeader title="Cameras" />
      <p>Coming soon.</p>
    </section>
  );
}
