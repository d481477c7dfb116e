DROP TABLE readiness_heartbeat;
