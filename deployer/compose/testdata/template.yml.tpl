version: '2'
services:
  app:
    image: registry.abc.net/app:{{ .Values.VERSION }}
    labels:
      io.dockmaster.test: "{{ .Stack.Name }}"
{{- if eq .Values.DEBUG "true" }}
    environment:
      DEBUG: "1"
{{- end }}
