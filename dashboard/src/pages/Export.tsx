import { PageHeader } from "../components/ui";
import type { PageProps } from ".";

export function ExportPage(_props: PageProps) {
  return (
    <section>
      <PageHeader title="Export" />
      <p>Coming soon.</p>
    </section>
  );
}
