/*-------------------------------------------------------------------------
 *
 * alerts.h
 *		Spike alerts: the apikey_usage.alert_interval GUC and the worker's
 *		evaluation of the alert rules (alerts.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef APIKEY_ALERTS_H
#define APIKEY_ALERTS_H

extern int	apikey_alert_interval_ms;

extern void alerts_define_gucs(void);
extern void alerts_evaluate_if_due(void);

#endif							/* APIKEY_ALERTS_H */
