// Grafana's own Dashboard type (@grafana/schema), plus the one thing its schema
// leaves untyped: what a Prometheus annotation query stores. Everything else in
// dashboards/turnout.json must satisfy `Dashboard` as it is.
import type { AnnotationQuery, Dashboard, DataQuery } from "@grafana/schema";

/** The query of a Prometheus annotation (Grafana's `target` of the annotation). */
export interface PrometheusAnnotationTarget extends DataQuery {
  expr: string;
  interval?: string;
}

/** How the Prometheus data source turns the query's series into annotations. */
export interface PrometheusAnnotationDisplay {
  titleFormat?: string;
  textFormat?: string;
  tagKeys?: string;
  useValueForTime?: boolean;
}

export type TurnoutDashboard = Omit<Dashboard, "annotations"> & {
  annotations?: {
    list?: Array<AnnotationQuery<PrometheusAnnotationTarget> & PrometheusAnnotationDisplay>;
  };
};
