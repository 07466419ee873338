// The official JS client's types for LLM model deployments, plus the envelopes they travel in.
// The envelopes are this project's (the client types only `data` and `pagination`); everything
// inside them is the client's own declaration.
import type {
  CreateLlmmodeldeploymentData,
  GetLlmmodeldeploymentResult,
  ListLlmmodeldeploymentsResult,
  UpdateLlmmodeldeploymentData,
  ApiCallResponse,
} from "./node_modules/@northflank/js-client/dist/esm/api-client";

export type Pagination = Omit<NonNullable<ApiCallResponse<unknown>["pagination"]>, "getNextPage">;
export type GetLlmModelDeployment = GetLlmmodeldeploymentResult;
export type GetLlmModelDeploymentResponse = { data: GetLlmmodeldeploymentResult };
export type ListLlmModelDeploymentsResponse = { data: ListLlmmodeldeploymentsResult; pagination: Pagination };
export type CreateLlmModelDeploymentRequest = CreateLlmmodeldeploymentData;
export type UpdateLlmModelDeploymentRequest = UpdateLlmmodeldeploymentData;
