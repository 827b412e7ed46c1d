-- A delivery of an "ntf_<ULID>" notification has an id that starts with
-- "dlv_<ULID>" (DeliveryID), so the primary key already finds a
-- notification's rows by that prefix (ByNotification). The index on
-- notification_id now holds only the rows whose id does not (hash ids from
-- before the prefix), and new rows no longer write to it. The condition is
-- legacyIDs in messages.go, word for word.
DROP INDEX deliveries_notification;
CREATE INDEX deliveries_notification_legacy ON deliveries(notification_id) WHERE substr(id, 1, 30) <> 'dlv_' || substr(notification_id, 5, 26);
