import { PageHeader } from "../components/ui";
import type { PageProps } from ".";

export function ChartsPage(_props: PageProps) {
  return (
    <section>
      <PageHeader title="Charts" />
      <p>Coming soon.</p>
    </section>
  );
}
