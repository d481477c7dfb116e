DROP TABLE worker_passes;
