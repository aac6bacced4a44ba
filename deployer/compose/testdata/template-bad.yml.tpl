version: '2'
services:
  app:
    image: app:{{ .Values.VERSION }}
    command: {{ nosuchfunc }}
