/*
 * Strict TypeScript types for dashboards/grafana/dashboards/apikey_usage.json,
 * built on the types Grafana publishes in @grafana/schema.
 *
 * gen_typecheck.mjs writes the dashboard JSON as an object literal assigned
 * to StrictDashboard, and tsc --strict checks it.  Because the literal is
 * fresh, TypeScript's excess-property check applies at every level: a
 * misspelt option, field-config property or panel type is an error, not a
 * silently ignored key.
 *
 * What the schema leaves open is closed here:
 *  - Panel.type is a plain string and Panel.options a Record: each panel
 *    type used by the dashboard gets its own member of a union, with the
 *    options type the schema exports for that plugin (Options of stat,
 *    piechart, bargauge, timeseries, table).
 *  - fieldConfig.defaults.custom is typed with the plugin's FieldConfig
 *    (the veneer type also allows any extra key, which would hide typos).
 *  - override properties are a union of the property ids the dashboard
 *    uses, each with the type of its value.
 *  - targets are Grafana PostgreSQL data source queries in code mode.
 *  - transformations are limited to rowsToFields with typed options.
 * The schema's string enums are accepted as their string values (JSON has
 * no enums): Literal<T> maps an enum type to the union of its values.
 */
import type {
	Dashboard,
	FieldColor,
	FieldConfig,
	MatcherConfig,
	Panel,
	TableCellOptions,
	ValueMapping,
	VariableModel,
	FieldTextAlignment,
} from '@grafana/schema';
import type * as stat from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type * as piechart from '@grafana/schema/dist/esm/raw/composable/piechart/panelcfg/x/PieChartPanelCfg_types.gen';
import type * as bargauge from '@grafana/schema/dist/esm/raw/composable/bargauge/panelcfg/x/BarGaugePanelCfg_types.gen';
import type * as timeseries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';
import type * as table from '@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen';

type IsAny<T> = 0 extends 1 & T ? true : false;

/* A string enum becomes the union of its values, recursively. */
export type Literal<T> =
	IsAny<T> extends true ? T :
	T extends string ? `${T}` :
	T extends number | boolean | bigint | symbol | null | undefined ? T :
	T extends (...args: never[]) => unknown ? T :
	T extends ReadonlyArray<infer E> ? Array<Literal<E>> :
	T extends object ? { [K in keyof T]: Literal<T[K]> } :
	T;

/* The one data source of the dashboard (see provisioning/datasources). */
export type PostgresRef = {
	type: 'grafana-postgresql-datasource';
	uid: string;
};

/*
 * A query of Grafana's PostgreSQL data source, written as raw SQL.  (Type
 * aliases, not interfaces, so that they fit the schema's Record types.)
 */
export type PostgresTarget = {
	refId: string;
	datasource: PostgresRef;
	editorMode: 'code';
	format: 'table' | 'time_series';
	rawQuery: true;
	rawSql: string;
	hide?: boolean;
};

type Matcher = Omit<Literal<MatcherConfig>, 'id' | 'options'> &
	({ id: 'byName'; options: string } | { id: 'byRegexp'; options: string });

/* The override properties the dashboard uses, each with its value type. */
type OverrideProperty<TCustom> =
	| { id: 'color'; value: Literal<FieldColor> }
	| { id: 'decimals'; value: number }
	| { id: 'displayName'; value: string }
	| { id: 'mappings'; value: Array<Literal<ValueMapping>> }
	| { id: 'unit'; value: string }
	| ('cellOptions' extends keyof TCustom ? { id: 'custom.cellOptions'; value: Literal<TableCellOptions> } : never)
	| ('align' extends keyof TCustom ? { id: 'custom.align'; value: Literal<FieldTextAlignment> } : never)
	| ('width' extends keyof TCustom ? { id: 'custom.width'; value: number } : never);

interface FieldConfigOf<TCustom> {
	defaults: Omit<Literal<FieldConfig>, 'custom'> & { custom?: Literal<TCustom> };
	overrides: Array<{ matcher: Matcher; properties: Array<OverrideProperty<TCustom>> }>;
}

interface RowsToFields {
	id: 'rowsToFields';
	options: {
		mappings: Array<{
			fieldName: string;
			handlerKey: 'field.name' | 'field.value' | 'field.label' | '__ignore';
		}>;
	};
}

type PanelBase = Omit<
	Literal<Panel>,
	'type' | 'options' | 'fieldConfig' | 'targets' | 'transformations' | 'datasource' | 'id' | 'gridPos'
> & {
	id: number;
	gridPos: { h: number; w: number; x: number; y: number };
	datasource: PostgresRef;
	targets: PostgresTarget[];
	transformations?: RowsToFields[];
};

/* Field configs without custom options: the plugin defines none. */
type NoCustom = Record<never, never>;

export type StatPanel = PanelBase & {
	type: 'stat';
	options: Literal<stat.Options>;
	fieldConfig: FieldConfigOf<NoCustom>;
};
export type PieChartPanel = PanelBase & {
	type: 'piechart';
	options: Literal<piechart.Options>;
	fieldConfig: FieldConfigOf<piechart.FieldConfig>;
};
export type BarGaugePanel = PanelBase & {
	type: 'bargauge';
	options: Literal<bargauge.Options>;
	fieldConfig: FieldConfigOf<NoCustom>;
};
export type TimeSeriesPanel = PanelBase & {
	type: 'timeseries';
	options: Literal<timeseries.Options>;
	fieldConfig: FieldConfigOf<timeseries.FieldConfig>;
};
export type TablePanel = PanelBase & {
	type: 'table';
	options: Literal<table.Options>;
	fieldConfig: FieldConfigOf<table.FieldConfig>;
};

export type StrictPanel = StatPanel | PieChartPanel | BarGaugePanel | TimeSeriesPanel | TablePanel;

type Variable = Omit<Literal<VariableModel>, 'datasource'> & { datasource?: PostgresRef };

export type StrictDashboard = Omit<Literal<Dashboard>, 'panels' | 'templating' | 'uid' | 'title'> & {
	uid: string;
	title: string;
	panels: StrictPanel[];
	templating: { list: Variable[] };
};

/* The schema's own types must accept the strict ones (no contradiction). */
export type Assignable<T extends U, U> = T;
export type _PanelsAreSchemaPanels = Assignable<StrictPanel, Literal<Panel>>;
export type _DashboardIsSchemaDashboard = Assignable<StrictDashboard, Literal<Dashboard>>;
