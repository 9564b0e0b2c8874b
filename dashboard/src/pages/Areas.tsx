import { PageHeader } from "../components/ui";
import type { PageProps } from ".";

export function AreasPage(_props: PageProps) {
  return (
    <section>
      <PageHeader title="Areas" />
      <p>Coming soon.</p>
    </section>
  );
}
